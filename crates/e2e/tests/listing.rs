//! Listing: `GET /objects?prefix=&delimiter=&cursor=&limit=` (`docs/API.md`
//! "Listing").

use std::collections::BTreeSet;
use std::time::Instant;

use e2e::{expect_raw_error, parse_time, shared, unique_key, wait_all, COMMIT_TIMEOUT};
use pipeline_client::{Client, ListOptions, PutOptions, UploadState};

fn client() -> Client {
    shared().client()
}

/// Writes every key (asynchronously, in parallel) and waits for the commits.
fn write_all(c: &Client, keys: &[String]) {
    let ids: Vec<String> = keys
        .iter()
        .map(|k| {
            c.put_object(k, k.as_bytes(), &PutOptions::content_type("text/plain"))
                .unwrap()
                .id
        })
        .collect();
    let (statuses, late) = wait_all(c, &ids, Instant::now() + COMMIT_TIMEOUT, 4);
    assert!(late.is_empty(), "not committed: {late:?}");
    assert!(
        statuses.values().all(|s| s.state == UploadState::Committed),
        "{statuses:?}"
    );
}

fn opts(prefix: &str, delimiter: Option<&str>, limit: Option<u32>) -> ListOptions {
    ListOptions {
        prefix: Some(prefix.into()),
        delimiter: delimiter.map(Into::into),
        cursor: None,
        limit,
    }
}

#[test]
fn delimiter_folds_keys_into_prefixes() {
    let c = client();
    let p = format!("{}/", unique_key("list"));
    let keys: Vec<String> = ["a.txt", "b/1", "b/2", "c/d/e", "z"]
        .iter()
        .map(|k| format!("{p}{k}"))
        .collect();
    write_all(&c, &keys);

    let page = c.list_objects(&opts(&p, Some("/"), None)).unwrap();
    let objects: Vec<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(objects, vec![format!("{p}a.txt"), format!("{p}z")]);
    assert_eq!(page.prefixes, vec![format!("{p}b/"), format!("{p}c/")]);
    assert!(!page.truncated);
    for o in &page.objects {
        assert_eq!(o.size, u64::try_from(o.key.len()).unwrap());
        assert!(!o.etag.is_empty());
        let _ = parse_time(&o.uploaded_at);
        assert_eq!(o.content_type.as_deref(), Some("text/plain"));
    }
    // One level down.
    let page = c
        .list_objects(&opts(&format!("{p}c/"), Some("/"), None))
        .unwrap();
    assert!(page.objects.is_empty());
    assert_eq!(page.prefixes, vec![format!("{p}c/d/")]);
    // Without a delimiter: every key, in order.
    let page = c.list_objects(&opts(&p, None, None)).unwrap();
    let all: Vec<String> = page.objects.iter().map(|o| o.key.clone()).collect();
    assert_eq!(all, keys);
    assert!(page.prefixes.is_empty());
}

#[test]
fn limit_1_pagination_visits_every_key_once() {
    let c = client();
    let p = format!("{}/", unique_key("page"));
    let keys: Vec<String> = (0..7).map(|i| format!("{p}k{i}")).collect();
    write_all(&c, &keys);
    let pages = c.list_all(&opts(&p, None, Some(1))).unwrap();
    let mut seen = Vec::new();
    for (i, page) in pages.iter().enumerate() {
        assert!(
            page.objects.len() <= 1,
            "page {i} has {} objects with limit=1",
            page.objects.len()
        );
        if page.truncated {
            assert!(
                page.cursor.as_deref().is_some_and(|c| !c.is_empty()),
                "truncated page {i} without a cursor"
            );
        }
        seen.extend(page.objects.iter().map(|o| o.key.clone()));
    }
    assert_eq!(
        seen, keys,
        "pagination must visit every key exactly once, in order"
    );
    assert!(!pages.last().unwrap().truncated);

    // With a delimiter too: every entry (object or prefix) once.
    let q = format!("{}/", unique_key("page-d"));
    let keys: Vec<String> = ["a", "b/1", "b/2", "c", "d/1"]
        .iter()
        .map(|k| format!("{q}{k}"))
        .collect();
    write_all(&c, &keys);
    let pages = c.list_all(&opts(&q, Some("/"), Some(1))).unwrap();
    let mut entries = Vec::new();
    for page in &pages {
        entries.extend(page.objects.iter().map(|o| o.key.clone()));
        entries.extend(page.prefixes.iter().cloned());
    }
    let unique: BTreeSet<&String> = entries.iter().collect();
    assert_eq!(
        unique.len(),
        entries.len(),
        "an entry came twice: {entries:?}"
    );
    let expected: BTreeSet<String> = ["a", "b/", "c", "d/"]
        .iter()
        .map(|k| format!("{q}{k}"))
        .collect();
    assert_eq!(entries.into_iter().collect::<BTreeSet<_>>(), expected);
}

#[test]
fn unicode_keys_list_and_filter() {
    let c = client();
    let p = format!("{}/", unique_key("uni"));
    let keys: Vec<String> = ["ß", "emoji-🎉", "ü/日本語.txt", "ü/ä ö"]
        .iter()
        .map(|k| format!("{p}{k}"))
        .collect();
    write_all(&c, &keys);
    let page = c.list_objects(&opts(&p, None, None)).unwrap();
    let listed: BTreeSet<String> = page.objects.iter().map(|o| o.key.clone()).collect();
    assert_eq!(listed, keys.iter().cloned().collect::<BTreeSet<_>>());
    let page = c
        .list_objects(&opts(&format!("{p}ü/"), None, None))
        .unwrap();
    let listed: Vec<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.contains(&format!("{p}ü/日本語.txt").as_str()));
    let page = c.list_objects(&opts(&p, Some("/"), None)).unwrap();
    assert_eq!(page.prefixes, vec![format!("{p}ü/")]);
    for k in &keys {
        let obj = c
            .get_object(k, &pipeline_client::GetOptions::default())
            .unwrap();
        assert_eq!(obj.body, k.as_bytes());
    }
}

#[test]
fn bad_limits_are_400_invalid_parameter() {
    let c = client();
    for limit in ["0", "1001", "abc", "-1", "1.5", "", "99999999999999999999"] {
        let r = c
            .raw("GET", &format!("/objects?limit={limit}"), &[], None)
            .unwrap();
        expect_raw_error(&r, 400, "invalid_parameter", &format!("limit={limit}"));
    }
    for limit in [1, 1000] {
        c.list_objects(&ListOptions {
            limit: Some(limit),
            prefix: Some("e2e/".into()),
            ..ListOptions::default()
        })
        .unwrap_or_else(|e| panic!("limit={limit}: {e}"));
    }
}

#[test]
fn pipeline_data_never_listed() {
    let c = client();
    // Bodies over a queue message are staged under the internal prefix
    // while in flight: list while some are.
    let ids: Vec<String> = (0..3)
        .map(|i| {
            let body = e2e::pseudo_random_bytes(300 * 1024, i);
            c.put_object(&unique_key("staged"), &body, &PutOptions::default())
                .unwrap()
                .id
        })
        .collect();
    let check = |what: &str| {
        for delimiter in [None, Some("/")] {
            let pages = c
                .list_all(&ListOptions {
                    delimiter: delimiter.map(Into::into),
                    ..ListOptions::default()
                })
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            for page in pages {
                for o in &page.objects {
                    assert!(!o.key.starts_with("_pipeline/"), "{what}: listed {}", o.key);
                }
                for p in &page.prefixes {
                    assert!(!p.starts_with("_pipeline"), "{what}: listed prefix {p}");
                }
            }
        }
        for prefix in ["_pipeline/", "_pipeline", "_"] {
            let r = c.list_objects(&ListOptions {
                prefix: Some(prefix.into()),
                ..ListOptions::default()
            });
            match r {
                Ok(page) => {
                    assert!(
                        page.objects.iter().all(|o| !o.key.starts_with("_pipeline")),
                        "{what}: prefix {prefix} lists internal data: {page:?}"
                    );
                    assert!(
                        page.prefixes.iter().all(|p| !p.starts_with("_pipeline")),
                        "{what}: {page:?}"
                    );
                }
                Err(e) => assert_eq!(e.status(), Some(400), "{what}: prefix {prefix}: {e}"),
            }
        }
    };
    check("while staged");
    let (_, late) = wait_all(&c, &ids, Instant::now() + COMMIT_TIMEOUT, 3);
    assert!(late.is_empty());
    check("after the commits");
}
