//! The `idgraph` binary: the command line, telemetry (with trace export for a serving
//! command that sets it up), the command, then telemetry's flush.

/// mimalloc: resolution allocates and frees many small records per event; glibc malloc
/// spent about a quarter of ingest time in `perf` (see docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    idgraph::cli::output::keep_standard_fds_open();
    let cli = idgraph::cli::parse();
    let telemetry = idgraph::telemetry::init(cli.telemetry().as_ref());
    let code = idgraph::cli::main(cli);
    // After the server stopped: the spans still queued are sent before the process exits.
    telemetry.shutdown();
    code
}
