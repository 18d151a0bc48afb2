//! The `idgraph` binary: telemetry, then the command line.

/// mimalloc: resolution allocates and frees many small records per event; glibc malloc
/// spent about a quarter of ingest time in `perf` (see docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    idgraph::cli::output::keep_standard_fds_open();
    idgraph::telemetry::init();
    idgraph::cli::main()
}
