//! Checks that the web console's npm-installed assets are present before they are bundled
//! into the binary (`src/serve/console.rs` includes them with `include_bytes!`).

fn main() {
    let cytoscape = "console/node_modules/cytoscape/dist/cytoscape.min.js";
    println!("cargo::rerun-if-changed={cytoscape}");
    println!("cargo::rerun-if-changed=console/src");
    if !std::path::Path::new(cytoscape).exists() {
        eprintln!(
            "error: {cytoscape} is missing. The web console bundles Cytoscape.js from npm: \
             run ./scripts/install-deps.sh (it runs `npm ci` in console/)."
        );
        std::process::exit(1);
    }
}
