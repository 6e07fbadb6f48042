//! The web pages served by the binary: `/` (landing), `/track/{order_id}` (the customer's
//! live map), `/ops` (the admins' fleet map), `/admin` and `/pharmacy` (the consoles), and
//! `/assets/{file}` (their scripts, styles and the vendored Leaflet).
//!
//! Every byte is embedded at compile time from `static/`, so the binary needs no files and
//! the pages no CDN. Pages carry no secrets and need no token: the token travels in the URL
//! fragment, which browsers never send, and the page's script reads it. The only
//! server-side value in a page is the tile URL (`MAP_TILE_URL`), put in a `<meta>`
//! attribute, HTML-escaped. A strict Content-Security-Policy allows scripts and styles from
//! this origin only, sockets to it, and images from it plus the tile host. The consoles have
//! no map; their policy instead lets a prescription fetched with the token be shown from a
//! `blob:` URL (an image inline, a PDF in an `<object>`).

use std::sync::LazyLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{route, web, HttpRequest, HttpResponse};

use crate::error::ApiError;
use crate::etag::{none_match_hits, tag_of};
use crate::state::AppState;

const INDEX_HTML: &str = include_str!("../../static/index.html");
const TRACK_HTML: &str = include_str!("../../static/track.html");
const OPS_HTML: &str = include_str!("../../static/ops.html");
const ADMIN_HTML: &str = include_str!("../../static/admin.html");
const PHARMACY_HTML: &str = include_str!("../../static/pharmacy.html");

/// Placeholder in the page templates replaced by the escaped tile URL.
const TILE_PLACEHOLDER: &str = "{{MAP_TILE_URL}}";

/// Own files change with the binary: revalidate (cheap, ETag). Vendored files only change
/// with a new Leaflet version: cache them for a day.
const CACHE_OWN: &str = "no-cache";
const CACHE_VENDOR: &str = "public, max-age=86400";

/// One embedded file under `/assets/`.
struct Asset {
    path: &'static str,
    bytes: &'static [u8],
    content_type: &'static str,
    cache: &'static str,
}

macro_rules! asset {
    ($path:literal, $ty:expr, $cache:expr) => {
        Asset {
            path: $path,
            bytes: include_bytes!(concat!("../../static/", $path)),
            content_type: $ty,
            cache: $cache,
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const PNG: &str = "image/png";
const TEXT: &str = "text/plain; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("app.css", CSS, CACHE_OWN),
    asset!("common.js", JS, CACHE_OWN),
    asset!("track.js", JS, CACHE_OWN),
    asset!("ops.js", JS, CACHE_OWN),
    asset!("console.css", CSS, CACHE_OWN),
    asset!("console.js", JS, CACHE_OWN),
    asset!("admin.js", JS, CACHE_OWN),
    asset!("pharmacy.js", JS, CACHE_OWN),
    asset!("favicon.svg", "image/svg+xml", CACHE_OWN),
    asset!("vendor/leaflet/leaflet.js", JS, CACHE_VENDOR),
    asset!("vendor/leaflet/leaflet.css", CSS, CACHE_VENDOR),
    asset!("vendor/leaflet/LICENSE", TEXT, CACHE_VENDOR),
    asset!("vendor/leaflet/images/layers.png", PNG, CACHE_VENDOR),
    asset!("vendor/leaflet/images/layers-2x.png", PNG, CACHE_VENDOR),
    asset!("vendor/leaflet/images/marker-icon.png", PNG, CACHE_VENDOR),
    asset!(
        "vendor/leaflet/images/marker-icon-2x.png",
        PNG,
        CACHE_VENDOR
    ),
    asset!("vendor/leaflet/images/marker-shadow.png", PNG, CACHE_VENDOR),
];

/// Strong ETags of the assets, in the order of [`ASSETS`].
static ETAGS: LazyLock<Vec<String>> =
    LazyLock::new(|| ASSETS.iter().map(|a| tag_of(a.bytes)).collect());

/// Escapes text for a double- or single-quoted HTML attribute value.
pub fn escape_attr(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// The CSP source for the tile URL's host: `https://tile.example.org`, with a leading
/// `{s}` subdomain template as `*.`; the bare scheme (`https:`) when the host cannot be
/// written as a CSP source; nothing for a same-origin (relative) URL.
pub fn tile_source(tile_url: &str) -> Option<String> {
    let (scheme, rest) = tile_url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p)),
        _ => (authority, None),
    };
    let mut labels: Vec<&str> = host.split('.').collect();
    if labels
        .first()
        .is_some_and(|l| l.starts_with('{') && l.ends_with('}'))
    {
        labels[0] = "*";
    }
    let plain =
        |l: &str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let host_ok = labels.len() > 1 && labels[0] == "*" && labels[1..].iter().all(|l| plain(l))
        || labels.iter().all(|l| plain(l));
    if !host_ok {
        return Some(format!("{scheme}:"));
    }
    let host = labels.join(".");
    Some(match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    })
}

/// The Content-Security-Policy of every page.
pub fn content_security_policy(tile_url: &str) -> String {
    let tiles = tile_source(tile_url)
        .map(|s| format!(" {s}"))
        .unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; \
         img-src 'self' data:{tiles}; connect-src 'self' ws: wss:; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// The Content-Security-Policy of the consoles: nothing from elsewhere, and a
/// prescription's bytes (fetched with the token) shown from a `blob:` URL.
pub const CONSOLE_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' blob: data:; object-src blob:; frame-src blob:; \
     connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn page(state: &AppState, template: &str) -> HttpResponse {
    let tile_url = &state.settings.map_tile_url;
    page_with_policy(
        &template.replace(TILE_PLACEHOLDER, &escape_attr(tile_url)),
        &content_security_policy(tile_url),
    )
}

fn page_with_policy(body: &str, policy: &str) -> HttpResponse {
    let mut res = HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .body(body.to_owned());
    if let Ok(csp) = HeaderValue::from_str(policy) {
        res.headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    res
}

/// Landing page: what Medify is, and where to go.
#[route("/", method = "GET", method = "HEAD")]
pub async fn index(state: web::Data<AppState>) -> HttpResponse {
    page(&state, INDEX_HTML)
}

/// The customer's live delivery map (token in the URL fragment, read by the page).
#[route("/track/{order_id}", method = "GET", method = "HEAD")]
pub async fn track(state: web::Data<AppState>) -> HttpResponse {
    page(&state, TRACK_HTML)
}

/// The admins' live fleet map.
#[route("/ops", method = "GET", method = "HEAD")]
pub async fn ops(state: web::Data<AppState>) -> HttpResponse {
    page(&state, OPS_HTML)
}

/// The admin console (orders, catalog, pharmacies and stock, riders, users, dispatch).
#[route("/admin", method = "GET", method = "HEAD")]
pub async fn admin() -> HttpResponse {
    page_with_policy(ADMIN_HTML, CONSOLE_SECURITY_POLICY)
}

/// The pharmacy staff's console (prescription reviews, open orders, stock).
#[route("/pharmacy", method = "GET", method = "HEAD")]
pub async fn pharmacy() -> HttpResponse {
    page_with_policy(PHARMACY_HTML, CONSOLE_SECURITY_POLICY)
}

/// Scripts, styles and the vendored Leaflet of the pages.
#[route("/assets/{file:.*}", method = "GET", method = "HEAD")]
pub async fn asset(req: HttpRequest, file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let at = ASSETS
        .iter()
        .position(|a| a.path == file.as_str())
        .ok_or(ApiError::NotFound)?;
    let asset = &ASSETS[at];
    let etag = &ETAGS[at];
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| none_match_hits(v, etag));
    let mut res = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::ETAG, etag.as_str()))
        .insert_header((header::CACHE_CONTROL, asset.cache))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    Ok(if fresh {
        res.finish()
    } else {
        res.content_type(asset.content_type).body(asset.bytes)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_escaped() {
        assert_eq!(
            escape_attr(r#"https://t/{z}?a=1&b="x"<'y'>"#),
            "https://t/{z}?a=1&amp;b=&quot;x&quot;&lt;&#39;y&#39;&gt;"
        );
    }

    #[test]
    fn tile_hosts_become_csp_sources() {
        let osm = "https://tile.openstreetmap.org/{z}/{x}/{y}.png";
        assert_eq!(
            tile_source(osm).as_deref(),
            Some("https://tile.openstreetmap.org")
        );
        assert_eq!(
            tile_source("https://{s}.tile.example.org:8443/{z}/{x}/{y}.png").as_deref(),
            Some("https://*.tile.example.org:8443")
        );
        assert_eq!(
            tile_source("http://127.0.0.1:9/{z}/{x}/{y}.png").as_deref(),
            Some("http://127.0.0.1:9")
        );
        assert_eq!(
            tile_source("https://a{s}b.example.org/{z}.png").as_deref(),
            Some("https:")
        );
        assert_eq!(
            tile_source("https://x.org; script-src *").as_deref(),
            Some("https:")
        );
        assert_eq!(tile_source("/tiles/{z}/{x}/{y}.png"), None);
        let csp = content_security_policy(osm);
        assert!(csp.contains("img-src 'self' data: https://tile.openstreetmap.org;"));
        assert!(csp.contains("script-src 'self';"));
    }

    #[test]
    fn every_asset_has_a_type_and_leaflet_keeps_its_licence() {
        assert!(ASSETS.iter().all(|a| !a.bytes.is_empty()));
        let licence = ASSETS
            .iter()
            .find(|a| a.path == "vendor/leaflet/LICENSE")
            .expect("Leaflet's licence is shipped");
        assert!(std::str::from_utf8(licence.bytes).is_ok_and(|t| t.contains("Volodymyr Agafonkin")));
        for page in [INDEX_HTML, TRACK_HTML, OPS_HTML, ADMIN_HTML, PHARMACY_HTML] {
            assert!(!page.contains("<script>"), "no inline scripts (CSP)");
        }
    }
}
