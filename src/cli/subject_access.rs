//! `idgraph subject-access`: writes the subject access document of one person (the same
//! document as `POST /v1/subject-access`, built by the same `Engine::subject_access`) from
//! a read-only view of a data directory, into an owner-only file. Nothing stored changes.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{ArgGroup, Args};

use crate::engine::{Engine, EngineError, SubjectTarget};

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("person").required(true).args(["identifier", "profile_id"])))]
pub struct SubjectAccessArgs {
    /// The person's identifier, `kind:value` (normalized like ingest), e.g.
    /// `email:ann@example.com`.
    #[arg(long, value_name = "KIND:VALUE")]
    pub identifier: Option<String>,
    /// The person's profile id (an id merged away names its survivor).
    #[arg(long, value_name = "ID")]
    pub profile_id: Option<String>,
    /// The JSON file to write (created readable by its owner only).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Replace `--out` if it exists.
    #[arg(long)]
    pub force: bool,
    /// Data directory (the store) [default: storage.data_dir of --config or
    /// IDGRAPH_STORAGE__DATA_DIR, else ./idgraph-data]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// `idgraph subject-access`.
pub fn run(config: Option<&PathBuf>, args: SubjectAccessArgs) -> anyhow::Result<()> {
    let s = super::existing(super::settings(config, args.data_dir.clone(), None)?)?;
    if args.out.exists() && !args.force {
        bail!(
            "--out {}: the file exists; pass --force to replace it",
            args.out.display()
        );
    }
    let dir = s.storage.data_dir.clone();
    let engine = Engine::open_read_only(s)
        .with_context(|| format!("cannot open the store in {} read-only", dir.display()))?;
    let target = match (args.identifier, args.profile_id) {
        (Some(text), None) => {
            SubjectTarget::Identifier(engine.parse_identifier("--identifier", &text)?)
        }
        (None, Some(id)) if id.is_empty() || id.len() > 128 => {
            bail!("--profile-id: a profile id of 1 to 128 bytes")
        }
        (None, Some(id)) => SubjectTarget::Profile(id.into()),
        _ => bail!("give exactly one of --identifier and --profile-id"),
    };
    let doc = match engine.subject_access(&target, crate::engine::now_ms()) {
        Ok(doc) => doc,
        Err(EngineError::NotFound { .. }) => bail!(
            "{} was not found in {} (an erased person leaves nothing to report)",
            match target {
                SubjectTarget::Identifier(_) => "the identifier",
                SubjectTarget::Profile(_) => "the profile",
            },
            dir.display()
        ),
        Err(e) => return Err(e.into()),
    };
    // The same bytes as the HTTP answer: through a JSON value, serialized compactly.
    let bytes = serde_json::to_vec(&serde_json::to_value(&doc)?)?;
    write_private(&args.out, &bytes)?;
    crate::errln!(
        "wrote the subject access document of {} ({} identifiers, {} events, {} history entries) to {}",
        doc.profile_id,
        doc.identifiers.len(),
        doc.events.len(),
        doc.history.len(),
        args.out.display()
    );
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file beside it, readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|_| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot move the document to {}", path.display()))?;
    Ok(())
}
