//! `ocimirror generate DEST`: writes a seeded corpus (see [`crate::corpus`])
//! to a registry or an OCI layout, for demos, benchmarks and tests.

use crate::corpus::{self, CorpusError, CorpusReport, CorpusSpec, ReferrerForm};
use crate::oci::{Digest, ImageReference, ReferenceError};
use crate::registry::http::HttpSettings;
use crate::registry::open::open;

/// Arguments of `ocimirror generate`.
#[derive(Clone, Debug, clap::Args)]
pub struct GenerateArgs {
    /// Where to write: `oci:<dir>` (one repository: the directory itself) or
    /// `<registry>/<prefix>` (repositories `<prefix>/app-<n>`).
    pub dest: String,
    /// Seed: the same arguments always give the same digests.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Repositories.
    #[arg(long, default_value_t = 1)]
    pub repos: usize,
    /// Tags per repository (`v1.0.<n>`).
    #[arg(long, default_value_t = 1)]
    pub tags: usize,
    /// Platforms per image (1 to 4).
    #[arg(long, default_value_t = 2)]
    pub platforms: usize,
    /// Unique layers per platform manifest.
    #[arg(long, default_value_t = 1)]
    pub layers: usize,
    /// Bytes per unique layer.
    #[arg(long, default_value_t = 4096)]
    pub layer_size: u64,
    /// Bytes of the base layer shared by all repositories.
    #[arg(long, default_value_t = 8192)]
    pub base_layer_size: u64,
    /// Referrer nesting depth (0 to 3).
    #[arg(long, default_value_t = 3)]
    pub referrer_depth: usize,
    /// api, fallback-tag or cosign-tags.
    #[arg(long, default_value = "api", value_parser = parse_form)]
    pub referrer_form: ReferrerForm,
    /// Instead of a corpus, add one signature to the image DEST
    /// (`<registry>/<repo>:<tag>`, `oci:<dir>:<tag>` or `@<digest>`), in
    /// --referrer-form; --seed makes it distinct from earlier ones.
    #[arg(long)]
    pub add_signature: bool,
}

fn parse_form(s: &str) -> Result<ReferrerForm, String> {
    match s {
        "api" => Ok(ReferrerForm::Api),
        "fallback-tag" => Ok(ReferrerForm::FallbackTag),
        "cosign-tags" => Ok(ReferrerForm::CosignTags),
        other => Err(format!(
            "invalid referrer form {other:?}: expected api, fallback-tag or cosign-tags"
        )),
    }
}

/// Why `generate` failed.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// DEST is not usable.
    #[error("invalid destination {dest:?}: {source}")]
    Destination {
        /// What was given.
        dest: String,
        /// Why.
        source: ReferenceError,
    },
    /// Writing failed.
    #[error(transparent)]
    Corpus(#[from] CorpusError),
    /// `--add-signature` needs one image.
    #[error("image {0} names no tag or digest to sign")]
    NoImage(String),
    /// The image to sign does not exist.
    #[error("image {0} not found")]
    NotFound(String),
}

/// Adds one signature to the image named by `args.dest`; returns the
/// signature's digest.
pub async fn add_signature(args: &GenerateArgs) -> Result<Digest, GenerateError> {
    let bad = |source| GenerateError::Destination {
        dest: args.dest.clone(),
        source,
    };
    let image: ImageReference = args.dest.parse().map_err(bad)?;
    let reference = image
        .reference()
        .ok_or_else(|| GenerateError::NoImage(args.dest.clone()))?;
    let registry =
        open(&image.location, &HttpSettings::default()).map_err(CorpusError::Registry)?;
    let subject = registry
        .manifest_head(&image.repo, &reference)
        .await
        .map_err(CorpusError::Registry)?
        .ok_or_else(|| GenerateError::NotFound(args.dest.clone()))?;
    Ok(corpus::add_signature(
        registry.as_ref(),
        &image.repo,
        &subject,
        args.referrer_form,
        args.seed,
    )
    .await?)
}

/// Writes the corpus.
pub async fn run(args: &GenerateArgs) -> Result<CorpusReport, GenerateError> {
    let bad = |source| GenerateError::Destination {
        dest: args.dest.clone(),
        source,
    };
    // `<registry>/<prefix>` parses as a repository reference whose path is the prefix.
    let (location, prefix) = if crate::oci::is_layout_name(&args.dest) {
        let r: ImageReference = args.dest.parse().map_err(bad)?;
        let prefix = if args.repos > 1 {
            "app-".to_string()
        } else {
            String::new()
        };
        (r.location, prefix)
    } else {
        let r: ImageReference = format!("{}/x", args.dest.trim_end_matches('/'))
            .parse()
            .map_err(bad)?;
        let path = r
            .repo
            .as_str()
            .strip_suffix('x')
            .unwrap_or("")
            .trim_end_matches('/');
        let prefix = if path.is_empty() {
            "app-".to_string()
        } else {
            format!("{path}/app-")
        };
        (r.location, prefix)
    };
    let registry = open(&location, &HttpSettings::default()).map_err(CorpusError::Registry)?;
    let spec = CorpusSpec {
        seed: args.seed,
        repo_prefix: prefix,
        repositories: args.repos,
        tags: args.tags,
        platforms: args.platforms,
        layers: args.layers,
        layer_size: args.layer_size,
        base_layer_size: args.base_layer_size,
        referrer_depth: args.referrer_depth,
        referrer_form: args.referrer_form,
    };
    Ok(corpus::generate(registry.as_ref(), &spec).await?)
}
