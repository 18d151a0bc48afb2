//! The OpenAPI document: the committed copy is the generated one, it is served with its
//! docs page, and Schemathesis (a real outside client, `scripts/schemathesis.sh install`)
//! finds no server error and no answer the document does not allow, for every role.

use std::path::PathBuf;

use crate::helpers::{idgraph_command, key_of, spawn_app, ServeProcess, TEST_KEYS};

fn committed() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schema/openapi.json");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test]
async fn committed_document_is_the_generated_one_and_is_served() {
    let out = idgraph_command()
        .arg("openapi")
        .output()
        .expect("run idgraph openapi");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = String::from_utf8(out.stdout).expect("UTF-8");
    assert!(
        generated == committed(),
        "schema/openapi.json is stale: regenerate it with `cargo run -- openapi > schema/openapi.json`"
    );

    let app = spawn_app().await;
    // No key needed.
    let resp = reqwest::get(app.url("/openapi.json")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.text().await.unwrap(), generated);
}

#[tokio::test]
async fn public_routes_are_documented_and_the_docs_page_is_served() {
    let doc: serde_json::Value = serde_json::from_str(&committed()).unwrap();
    for path in ["/health", "/ready", "/metrics", "/openapi.json"] {
        assert!(
            doc["paths"][path]["get"].is_object(),
            "GET {path} has no #[utoipa::path] listed in src/serve/openapi.rs"
        );
    }
    let app = spawn_app().await;
    let page = reqwest::get(app.url("/docs")).await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("/docs/swagger-ui-bundle.js"), "{html}");
    for (file, ct) in [
        ("swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
        ("swagger-ui.css", "text/css; charset=utf-8"),
        ("init.js", "text/javascript; charset=utf-8"),
    ] {
        let resp = reqwest::get(app.url(&format!("/docs/{file}")))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{file}");
        assert_eq!(resp.headers()["content-type"], ct, "{file}");
        assert!(resp.bytes().await.unwrap().len() > 50, "{file}");
    }
    let js = reqwest::get(app.url("/docs/swagger-ui-bundle.js"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(js.contains("SwaggerUIBundle"));
    let missing = reqwest::get(app.url("/docs/nothing.js")).await.unwrap();
    assert_eq!(missing.status(), 404);
}

/// Every operation, with every role's key, against a live `idgraph serve`: no 5xx, and
/// every status, content type and body as the document says.
#[test]
fn schemathesis_finds_no_server_error_or_violation() {
    let st = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/schemathesis/venv/bin/st");
    assert!(
        st.exists(),
        "{} is missing: run scripts/schemathesis.sh install (scripts/test.sh does)",
        st.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(dir.path());
    let base = server.url("");
    let schema = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schema/openapi.json");
    let mut failures = Vec::new();
    for (name, _role, unmask) in TEST_KEYS {
        if unmask {
            continue; // the same role as test-agent
        }
        let out = std::process::Command::new(&st)
            .arg("run")
            .arg(&schema)
            .args(["--url", base.trim_end_matches('/')])
            .args(["--header", &format!("Authorization: Bearer {}", key_of(name))])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            ])
            .args(["--max-examples", "8", "--workers", "1", "--request-timeout", "20"])
            .args(["--phases", "examples,coverage,fuzzing"])
            .args(["--seed", "19"])
            .env("SCHEMATHESIS_HOOKS", "")
            .output()
            .expect("run schemathesis");
        if !out.status.success() {
            failures.push(format!(
                "key {name}:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\nserver log:\n{}",
        failures.join("\n\n"),
        server.stderr()
    );
}
