//! The `idgraph` binary: telemetry, then the command line.

fn main() -> std::process::ExitCode {
    idgraph::telemetry::init();
    idgraph::cli::main()
}
