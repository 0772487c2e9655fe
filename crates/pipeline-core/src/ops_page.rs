//! The operations page, `GET /ops`: which request paths name which of its
//! files in the Worker's static assets (wrangler.toml `[assets]`, built
//! from `ops/` into `build/ops/` by scripts/build.sh).
//!
//! Only the page's own folder is reachable: `/ops` and `/ops/` are the
//! page, `/ops/NAME` a file at the top of the assets folder. Anything else
//! (nested paths, dot files, odd characters) names no file, so the Worker
//! answers its `404` without asking the assets.

/// Security headers of every file of the page. The page loads only its own
/// script and stylesheet and talks only to this Worker (`'self'`); uPlot
/// sizes its elements with inline styles. It is never framed, sends no
/// referrer (the URL is harmless, but nothing needs it) and its forms are
/// handled by the script, never submitted.
pub const SECURITY_HEADERS: [(&str, &str); 3] = [
    (
        "Content-Security-Policy",
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
];

/// The asset path (as the assets binding knows it) for a request `path`,
/// or `None` when the path is not one of the page's files.
///
/// `/ops` and `/ops/` give `/index.html`; `/ops/NAME` gives `/NAME` when
/// `NAME` is one file name of ASCII letters, digits, `.`, `-` and `_` that
/// does not start with a dot.
#[must_use]
pub fn asset_path(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/ops")?;
    if rest.is_empty() || rest == "/" {
        return Some("/index.html".to_owned());
    }
    let name = rest.strip_prefix('/')?;
    let plain = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if name.is_empty() || name.starts_with('.') || !plain {
        return None;
    }
    Some(format!("/{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_itself() {
        assert_eq!(asset_path("/ops").as_deref(), Some("/index.html"));
        assert_eq!(asset_path("/ops/").as_deref(), Some("/index.html"));
        assert_eq!(
            asset_path("/ops/index.html").as_deref(),
            Some("/index.html")
        );
    }

    #[test]
    fn files_of_the_page() {
        assert_eq!(asset_path("/ops/app.js").as_deref(), Some("/app.js"));
        assert_eq!(asset_path("/ops/style.css").as_deref(), Some("/style.css"));
        assert_eq!(
            asset_path("/ops/uPlot_1-6.min.js").as_deref(),
            Some("/uPlot_1-6.min.js")
        );
    }

    #[test]
    fn nothing_outside_the_folder() {
        for path in [
            "/",
            "/op",
            "/opsx",
            "/ops.html",
            "/opsapp.js",
            "/ops//",
            "/ops/a/b.js",
            "/ops/../wrangler.toml",
            "/ops/..",
            "/ops/.env",
            "/ops/%2e%2e",
            "/ops/a%2Fb",
            "/ops/app.js?x",
            "/objects/ops",
        ] {
            assert_eq!(asset_path(path), None, "{path}");
        }
    }
}
