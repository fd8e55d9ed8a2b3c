//! `hiscale bench`: micro-benchmarks of the store and the REST edge (written by a helper).

/// Options of `hiscale bench`.
#[derive(Debug, clap::Args)]
pub struct BenchOptions {
    /// PostgreSQL server URL (e.g. postgres://postgres@127.0.0.1:5432/); SQLite only without.
    #[arg(long, env = "HISCALE_TEST_POSTGRES")]
    pub postgres: Option<String>,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3)]
    pub seconds: u64,
}

pub async fn run(_options: BenchOptions) -> anyhow::Result<()> {
    anyhow::bail!("the benchmark is being written")
}
