//! Checks that the web console's npm-installed assets are present before they are bundled
//! into the binary (`src/serve/console.rs` includes them with `include_bytes!`).

fn main() {
    println!("cargo::rerun-if-changed=console/src");
    for (asset, what) in [
        (
            "console/node_modules/cytoscape/dist/cytoscape.min.js",
            "Cytoscape.js",
        ),
        (
            "console/node_modules/chart.js/dist/chart.umd.min.js",
            "Chart.js",
        ),
    ] {
        println!("cargo::rerun-if-changed={asset}");
        if !std::path::Path::new(asset).exists() {
            eprintln!(
                "error: {asset} is missing. The web console bundles {what} from npm: \
                 run ./scripts/install-deps.sh (it runs `npm ci` in console/)."
            );
            std::process::exit(1);
        }
    }
}
