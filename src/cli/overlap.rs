//! `idgraph overlap`: one side of a partner overlap (see `crate::cleanroom` and the README's
//! "Partner overlap (clean room)"). Reads the party's golden profiles read-only from its
//! data directory (beside a running server), computes its tokens, then listens for or
//! connects to the other side and prints the report (counts only) as JSON.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::cleanroom::population::{Population, Selection};
use crate::cleanroom::protocol::{self, Method, Params, Role};
use crate::cleanroom::report::{self, Outcome};
use crate::cleanroom::tokens::{EcdhSecret, HmacKey};
use crate::cleanroom::{frame::Framed, transport, valid_name};
use crate::model::{codec, GoldenProfile, ProfileId};
use crate::store::GraphStore;

/// The smallest `--min-group-size` accepted.
pub const MIN_GROUP_FLOOR: u64 = 10;
/// Profiles read from the store at a time.
const PAGE: usize = 1000;

/// How identifiers become tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProtocolArg {
    // DH private set intersection over ristretto255: neither side can test guesses.
    Ecdh,
    // HMAC-SHA256 with a key agreed for the collaboration (`--key-file`): a key holder
    // can test guessed identifiers offline.
    Hmac,
}

#[derive(clap::Args, Debug)]
pub struct OverlapArgs {
    /// Wait for the other side on this address, host:port (port 0: any free port; the
    /// address is printed on stderr as `overlap: listening on HOST:PORT`).
    #[arg(
        long,
        value_name = "ADDR",
        conflicts_with = "connect",
        required_unless_present = "connect"
    )]
    pub listen: Option<String>,
    /// Connect to the other side listening on this address, host:port.
    #[arg(long, value_name = "ADDR")]
    pub connect: Option<String>,
    /// The collaboration's id, the same on both sides (1-64 of A-Z a-z 0-9 . _ -); it is
    /// part of every token, so tokens of one collaboration mean nothing in another.
    #[arg(long, value_name = "ID")]
    pub collaboration: String,
    /// ecdh: DH private set intersection over ristretto255 (neither side can test guessed
    /// identifiers); hmac: HMAC-SHA256 with a key agreed for the collaboration (`--key-file`;
    /// a key holder can test guesses offline).
    #[arg(long, value_enum, default_value = "ecdh")]
    pub protocol: ProtocolArg,
    /// With --protocol hmac: the file holding the collaboration's key (its bytes, at
    /// least 32).
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Identifier kinds compared, the same on both sides.
    #[arg(long, value_delimiter = ',', default_value = "email,phone")]
    pub kinds: Vec<String>,
    /// The consent purpose a profile needs to take part; the others are left out and
    /// counted.
    #[arg(long, default_value = "partner_sharing")]
    pub purpose: String,
    /// Count the shared profiles by `source` or by a trait (`tier`, or an address field
    /// such as `city`); repeat or separate with commas.
    #[arg(long, value_name = "ATTR", value_delimiter = ',')]
    pub breakdown: Vec<String>,
    /// Counts under this are suppressed; both sides apply the larger of their two settings.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub min_group_size: u64,
    /// Longest wait for the other side: to connect, and at each step of the exchange.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub timeout_secs: u64,
    /// Write the report here instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Data directory (the store and search index) [default: storage.data_dir of --config or
    /// IDGRAPH_STORAGE__DATA_DIR, else ./idgraph-data]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// `idgraph overlap`.
pub fn run(config: Option<&PathBuf>, args: OverlapArgs) -> anyhow::Result<()> {
    let selection = selection(&args)?;
    if !valid_name(&args.collaboration) {
        bail!("--collaboration must be 1 to 64 of A-Z a-z 0-9 . _ -");
    }
    if args.min_group_size < MIN_GROUP_FLOOR {
        bail!("--min-group-size must be at least {MIN_GROUP_FLOOR}");
    }
    if args.timeout_secs == 0 {
        bail!("--timeout-secs must be at least 1");
    }
    let method = match (args.protocol, &args.key_file) {
        (ProtocolArg::Ecdh, None) => Method::Ecdh(EcdhSecret::random()),
        (ProtocolArg::Ecdh, Some(_)) => {
            bail!("--key-file is for --protocol hmac; ecdh draws a fresh secret for every run")
        }
        (ProtocolArg::Hmac, None) => bail!("--protocol hmac needs --key-file"),
        (ProtocolArg::Hmac, Some(path)) => {
            let key = std::fs::read(path)
                .with_context(|| format!("--key-file {}: cannot read", path.display()))?;
            Method::Hmac(
                HmacKey::new(key).with_context(|| format!("--key-file {}", path.display()))?,
            )
        }
    };
    let params = Params {
        method,
        collaboration: args.collaboration.clone(),
        kinds: selection.kinds.clone(),
        min_group_size: args.min_group_size,
    };

    let s = super::existing(super::settings(config, args.data_dir.clone(), None)?)?;
    if !s.consent.purposes.contains(&selection.purpose) {
        bail!(
            "--purpose {:?} is not a configured consent purpose ([consent] purposes: {})",
            selection.purpose,
            s.consent.purposes.join(", ")
        );
    }
    if s.graph.store != crate::config::GraphBackend::Embedded {
        bail!("idgraph overlap reads the embedded store (not supported on a graph database yet)");
    }
    let store = crate::store::rocks::RocksStore::open_read_only(
        &s.storage.data_dir,
        crate::crypto::for_settings(&s)?,
    )?;
    let population = read_population(&store, &selection)?;
    drop(store);
    let prepared = protocol::prepare(&params, &population);
    tracing::info!(
        considered = population.considered,
        excluded_no_consent = population.excluded_no_consent,
        members = population.members.len(),
        "overlap: tokens prepared"
    );

    let timeout = Duration::from_secs(args.timeout_secs);
    let (stream, role) = match (&args.listen, &args.connect) {
        (Some(addr), _) => {
            let listening = transport::Listening::bind(addr)?;
            // Machine-readable for scripts and tests that listen on port 0.
            crate::errln!("overlap: listening on {}", listening.local_addr()?);
            (listening.accept(timeout)?, Role::First)
        }
        (None, Some(addr)) => (transport::connect(addr, timeout)?, Role::Second),
        (None, None) => bail!("give --listen ADDR or --connect ADDR"),
    };
    let mut framed = Framed::new(stream);
    let matched = protocol::intersect(&mut framed, role, &params, &prepared)?;
    let min = matched.min_group_size;
    let own = report::totals(&population, &matched.shared, min);
    let peer = protocol::exchange_totals(&mut framed, role, &own)?;
    let report = report::report(
        Outcome {
            protocol: params.method.name(),
            collaboration: &params.collaboration,
            selection: &selection,
            min_group_size: min,
            own,
            peer,
        },
        &population,
        &matched.shared,
    );
    let json = serde_json::to_string_pretty(&report)?;
    match &args.out {
        Some(path) => std::fs::write(path, format!("{json}\n"))
            .with_context(|| format!("--out {}: cannot write", path.display()))?,
        None => crate::outln!("{json}"),
    }
    Ok(())
}

/// The checked selection flags.
fn selection(args: &OverlapArgs) -> anyhow::Result<Selection> {
    let mut kinds: Vec<String> = args.kinds.iter().map(|k| k.trim().to_owned()).collect();
    kinds.sort();
    kinds.dedup();
    if kinds.is_empty() {
        bail!("--kinds must name at least one identifier kind");
    }
    for k in &kinds {
        if !crate::ingest::identifier::valid_kind_name(k) {
            bail!("--kinds: {k:?} is not an identifier kind ([a-z][a-z0-9_]*, at most 32)");
        }
    }
    if !valid_name(&args.purpose) {
        bail!("--purpose must be 1 to 64 of A-Z a-z 0-9 . _ -");
    }
    let mut breakdowns: Vec<String> = Vec::new();
    for b in &args.breakdown {
        let b = b.trim();
        if !crate::ingest::identifier::valid_kind_name(b) {
            bail!(
                "--breakdown: {b:?} is not `source` or a trait name ([a-z][a-z0-9_]*, at most 32)"
            );
        }
        if !breakdowns.iter().any(|x| x == b) {
            breakdowns.push(b.to_owned());
        }
    }
    Ok(Selection {
        kinds,
        purpose: args.purpose.clone(),
        breakdowns,
    })
}

/// Every golden profile of `store`, taken into a [`Population`].
fn read_population(store: &dyn GraphStore, selection: &Selection) -> anyhow::Result<Population> {
    let mut population = Population::default();
    let mut after: Option<ProfileId> = None;
    loop {
        let page = store.goldens_after(after.as_ref(), PAGE)?;
        for (id, raw) in &page {
            let Some((_, json)) = codec::split_golden_cache(raw) else {
                bail!("golden profile {id}: empty cached value");
            };
            let golden: GoldenProfile = serde_json::from_slice(json).map_err(|e| {
                anyhow::anyhow!(
                    "golden profile {id}: malformed JSON at column {}",
                    e.column()
                )
            })?;
            population.add(selection, &golden);
        }
        if page.len() < PAGE {
            break;
        }
        after = page.last().map(|(id, _)| id.clone());
    }
    Ok(population)
}
