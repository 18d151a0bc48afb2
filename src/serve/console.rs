//! The web console for support agents: static assets compiled into the binary.
//!
//! `console/src` holds the page, script and stylesheet; Cytoscape.js and Chart.js (the
//! dashboard's charts) come from npm
//! (`console/package.json`, installed by `scripts/install-deps.sh`). Nothing is fetched from
//! a CDN: the console works on a closed network.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use super::error::ApiError;
use crate::engine::Engine;

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../console/src/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../console/src/app.css"),
    },
    Asset {
        name: "cytoscape.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../console/node_modules/cytoscape/dist/cytoscape.min.js"),
    },
    Asset {
        name: "chart.umd.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../console/node_modules/chart.js/dist/chart.umd.min.js"),
    },
];

const INDEX: &[u8] = include_bytes!("../../console/src/index.html");

/// A static file of the console (or of the API docs page): no caching surprises, no
/// sniffing, and a policy that loads nothing from elsewhere.
pub(crate) fn respond(
    content_type: &'static str,
    body: impl actix_web::body::MessageBody + 'static,
) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'",
        ))
        .body(body)
}

/// The file's bytes from `server.console_dir` when set (console development), else the
/// compiled-in copy. Only the console's own file names are ever read from disk.
fn body(engine: &Engine, name: &str, embedded: &'static [u8]) -> Result<Vec<u8>, ApiError> {
    match &engine.settings().server.console_dir {
        Some(dir) if name != "cytoscape.min.js" && name != "chart.umd.min.js" => {
            std::fs::read(dir.join(name)).map_err(|e| {
                ApiError::not_found(format!("console file {name} in server.console_dir: {e}"))
            })
        }
        _ => Ok(embedded.to_vec()),
    }
}

/// `GET /`: the console page.
pub async fn index(engine: web::Data<Engine>) -> Result<HttpResponse, ApiError> {
    Ok(respond(
        "text/html; charset=utf-8",
        body(&engine, "index.html", INDEX)?,
    ))
}

/// `GET /assets/{name}`.
pub async fn asset(
    engine: web::Data<Engine>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let asset = ASSETS
        .iter()
        .find(|a| a.name == name.as_str())
        .ok_or_else(|| {
            ApiError::not_found(format!("no console asset named {:?}", name.as_str()))
        })?;
    Ok(respond(
        asset.content_type,
        body(&engine, asset.name, asset.body)?,
    ))
}
