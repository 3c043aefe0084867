//! Image references: `registry[:port]/repo[:tag][@digest]` with Docker Hub
//! normalisation, and `oci:<dir>[:tag|@digest]` for OCI layout directories.
//!
//! References: distribution-spec §"Overview" name and tag grammar;
//! distribution/reference `normalize.go` (docker.io, `library/`).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::LazyLock;

use regex::Regex;

use super::digest::{Digest, DigestError};

/// Docker Hub's canonical registry name.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that serves Docker Hub's registry API.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";

static REPO_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$")
        .expect("static regex")
});
static TAG_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$").expect("static regex"));

/// Why a reference was refused. Every variant names the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// Empty input.
    #[error("empty image reference")]
    Empty,
    /// Repository name fails the distribution-spec grammar.
    #[error(
        "invalid repository name {name:?} in reference {input:?}: must be lower-case components [a-z0-9] separated by '.', '_', '__', '-' or '/'"
    )]
    InvalidRepository {
        /// The whole input.
        input: String,
        /// The offending name.
        name: String,
    },
    /// Tag fails `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
    #[error(
        "invalid tag {tag:?} in reference {input:?}: tags are 1-128 characters of [A-Za-z0-9_.-] not starting with '.' or '-'"
    )]
    InvalidTag {
        /// The whole input.
        input: String,
        /// The offending tag.
        tag: String,
    },
    /// Digest part is invalid.
    #[error("invalid digest in reference {input:?}: {source}")]
    InvalidDigest {
        /// The whole input.
        input: String,
        /// Why.
        source: DigestError,
    },
    /// Registry host part is invalid.
    #[error("invalid registry host {host:?} in reference {input:?}")]
    InvalidHost {
        /// The whole input.
        input: String,
        /// The offending host.
        host: String,
    },
    /// `oci:` without a directory.
    #[error("OCI layout reference {0:?} names no directory (expected oci:<dir>[:tag|@digest])")]
    EmptyLayoutPath(String),
    /// Full name too long.
    #[error("reference {0:?} is longer than 255 characters of registry and name")]
    TooLong(String),
    /// A skopeo-style transport prefix (`docker://`, `oci:` is ours).
    #[error(
        "reference {input:?}: transports like {transport:?} are not used; write registry/repo[:tag][@digest] (e.g. docker.io/library/alpine:3.20) or oci:<dir>[:tag|@digest]"
    )]
    Transport {
        /// The whole input.
        input: String,
        /// The transport prefix seen (`docker://`, `ocidir://`, ...).
        transport: String,
    },
}

/// A validated repository name. The empty name stands for the root of an OCI
/// layout directory.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    /// Validates `name` against the distribution-spec grammar.
    pub fn new(name: &str) -> Result<Self, ReferenceError> {
        if REPO_RE.is_match(name) {
            Ok(RepoName(name.to_string()))
        } else {
            Err(ReferenceError::InvalidRepository {
                input: name.to_string(),
                name: name.to_string(),
            })
        }
    }

    /// The root of an OCI layout directory.
    pub fn root() -> Self {
        RepoName(String::new())
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for the layout root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated tag.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    /// Validates `tag`.
    pub fn new(tag: &str) -> Result<Self, ReferenceError> {
        if TAG_RE.is_match(tag) {
            Ok(Tag(tag.to_string()))
        } else {
            Err(ReferenceError::InvalidTag {
                input: tag.to_string(),
                tag: tag.to_string(),
            })
        }
    }

    /// The tag as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a manifest request names: a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reference {
    /// By tag.
    Tag(Tag),
    /// By digest.
    Digest(Digest),
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

impl From<Digest> for Reference {
    fn from(d: Digest) -> Self {
        Reference::Digest(d)
    }
}

impl From<Tag> for Reference {
    fn from(t: Tag) -> Self {
        Reference::Tag(t)
    }
}

/// Where the content lives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Location {
    /// A registry, by its canonical name (`docker.io`, `localhost:5000`).
    Registry(String),
    /// An OCI image layout directory.
    Layout(PathBuf),
}

impl Location {
    /// The host to send HTTP requests to (Docker Hub's API host for docker.io).
    pub fn api_host(&self) -> Option<&str> {
        match self {
            Location::Registry(h) if h == DOCKER_HUB => Some(DOCKER_HUB_API_HOST),
            Location::Registry(h) => Some(h),
            Location::Layout(_) => None,
        }
    }
}

/// True for `localhost`, 127.0.0.0/8 and ::1, with or without a port.
pub fn is_loopback_host(host: &str) -> bool {
    let bare = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else if host.matches(':').count() == 1 {
        host.split(':').next().unwrap_or(host)
    } else {
        host
    };
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A parsed image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageReference {
    /// Registry or layout directory.
    pub location: Location,
    /// Repository (the root for a layout directory).
    pub repo: RepoName,
    /// Tag, when given.
    pub tag: Option<Tag>,
    /// Digest, when given (wins over the tag for fetching).
    pub digest: Option<Digest>,
}

impl ImageReference {
    /// The reference to fetch: the digest when given, else the tag.
    pub fn reference(&self) -> Option<Reference> {
        self.digest
            .clone()
            .map(Reference::Digest)
            .or_else(|| self.tag.clone().map(Reference::Tag))
    }
}

/// What starts a layout reference and a layout adapter's name.
const LAYOUT_PREFIX: &str = "oci:";

/// True when `name` (a reference, or an adapter's [`name`]) is an OCI
/// layout directory: the one place that knows the `oci:` syntax.
///
/// [`name`]: crate::registry::Registry::name
pub fn is_layout_name(name: &str) -> bool {
    name.starts_with(LAYOUT_PREFIX)
}

/// The name of the layout adapter of `dir` (`oci:<dir>`).
pub fn layout_name(dir: &std::path::Path) -> String {
    format!("{LAYOUT_PREFIX}{}", dir.display())
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Location::Registry(host) => write!(f, "{host}/{}", self.repo)?,
            Location::Layout(dir) => {
                write!(f, "{LAYOUT_PREFIX}{}", dir.display())?;
                if !self.repo.is_root() {
                    write!(f, "/{}", self.repo)?;
                }
            }
        }
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for ImageReference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if let Some(rest) = input.strip_prefix(LAYOUT_PREFIX) {
            return parse_layout(input, rest);
        }
        if let Some(end) = input.find("://") {
            return Err(ReferenceError::Transport {
                input: input.to_string(),
                transport: input[..end + 3].to_string(),
            });
        }
        let (rest, digest) = split_digest(input)?;
        // The tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        let tag = tag.map(|t| parse_tag(input, t)).transpose()?;
        let (host, path) = match name.split_once('/') {
            Some((first, path)) if is_domain(first) => (first.to_string(), path.to_string()),
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '@') {
            return Err(ReferenceError::InvalidHost {
                input: input.to_string(),
                host,
            });
        }
        let host = if host == "index.docker.io" || host == DOCKER_HUB_API_HOST {
            DOCKER_HUB.to_string()
        } else {
            host
        };
        let path = if host == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if host.len() + 1 + path.len() > 255 {
            return Err(ReferenceError::TooLong(input.to_string()));
        }
        let repo = RepoName::new(&path).map_err(|_| ReferenceError::InvalidRepository {
            input: input.to_string(),
            name: path.clone(),
        })?;
        Ok(ImageReference {
            location: Location::Registry(host),
            repo,
            tag,
            digest,
        })
    }
}

/// `oci:<dir>[:tag|@digest]`: the tag is after the last ':' when what follows
/// it has no '/' (so `oci:./dir` and `oci:/a/b:v1` both work).
fn parse_layout(input: &str, rest: &str) -> Result<ImageReference, ReferenceError> {
    let (rest, digest) = split_digest(rest).map_err(|e| match e {
        ReferenceError::InvalidDigest { source, .. } => ReferenceError::InvalidDigest {
            input: input.to_string(),
            source,
        },
        other => other,
    })?;
    let (dir, tag) = match rest.rfind(':') {
        Some(i) if !rest[i + 1..].contains('/') && digest.is_none() => {
            (&rest[..i], Some(parse_tag(input, &rest[i + 1..])?))
        }
        _ => (rest, None),
    };
    if dir.is_empty() {
        return Err(ReferenceError::EmptyLayoutPath(input.to_string()));
    }
    Ok(ImageReference {
        location: Location::Layout(PathBuf::from(dir)),
        repo: RepoName::root(),
        tag,
        digest,
    })
}

fn split_digest(input: &str) -> Result<(&str, Option<Digest>), ReferenceError> {
    match input.rsplit_once('@') {
        Some((rest, d)) => {
            let digest = d.parse().map_err(|source| ReferenceError::InvalidDigest {
                input: input.to_string(),
                source,
            })?;
            Ok((rest, Some(digest)))
        }
        None => Ok((input, None)),
    }
}

fn parse_tag(input: &str, tag: &str) -> Result<Tag, ReferenceError> {
    Tag::new(tag).map_err(|_| ReferenceError::InvalidTag {
        input: input.to_string(),
        tag: tag.to_string(),
    })
}

/// distribution/reference: the first component is a registry when it has a
/// '.' or ':' or is `localhost` (or has upper case, which names cannot).
fn is_domain(first: &str) -> bool {
    first.contains('.')
        || first.contains(':')
        || first == "localhost"
        || first.chars().any(|c| c.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ImageReference {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn docker_hub_normalisation() {
        let r = parse("ubuntu");
        assert_eq!(r.location, Location::Registry("docker.io".into()));
        assert_eq!(r.repo.as_str(), "library/ubuntu");
        assert_eq!(r.tag, None);
        assert_eq!(r.location.api_host(), Some("registry-1.docker.io"));
        assert_eq!(
            parse("docker.io/ubuntu:22.04").repo.as_str(),
            "library/ubuntu"
        );
        assert_eq!(
            parse("index.docker.io/foo/bar").to_string(),
            "docker.io/foo/bar"
        );
        assert_eq!(
            parse("registry-1.docker.io/alpine").repo.as_str(),
            "library/alpine"
        );
        assert_eq!(parse("foo/bar").repo.as_str(), "foo/bar");
    }

    #[test]
    fn registries_ports_tags_digests() {
        let d = Digest::sha256(b"x");
        let r = parse(&format!("localhost:5000/a/b:v1@{d}"));
        assert_eq!(r.location, Location::Registry("localhost:5000".into()));
        assert_eq!(r.repo.as_str(), "a/b");
        assert_eq!(r.tag.as_ref().unwrap().as_str(), "v1");
        assert_eq!(r.reference(), Some(Reference::Digest(d.clone())));
        let r = parse("127.0.0.1:5000/x");
        assert_eq!(r.tag, None);
        assert_eq!(r.location.api_host(), Some("127.0.0.1:5000"));
        assert_eq!(
            parse(&format!("ghcr.io/o/r@{d}")).to_string(),
            format!("ghcr.io/o/r@{d}")
        );
    }

    #[test]
    fn layout_references() {
        // skopeo users type transports: say what to write instead.
        let e = "docker://docker.io/library/alpine:3.20"
            .parse::<ImageReference>()
            .unwrap_err();
        assert!(e.to_string().contains("\"docker://\""), "{e}");
        assert!(e.to_string().contains("oci:<dir>"), "{e}");
        let r = parse("oci:./fixtures/demo:v1");
        assert_eq!(
            r.location,
            Location::Layout(PathBuf::from("./fixtures/demo"))
        );
        assert_eq!(r.tag.unwrap().as_str(), "v1");
        let r = parse("oci:/tmp/x");
        assert_eq!(r.tag, None);
        let d = Digest::sha256(b"y");
        let r = parse(&format!("oci:/tmp/x@{d}"));
        assert_eq!(r.digest, Some(d));
        assert_eq!(r.location, Location::Layout(PathBuf::from("/tmp/x")));
    }

    #[test]
    fn errors_name_the_input_and_the_fault() {
        let cases = [
            ("Ubuntu/ABC", "invalid repository name"),
            ("ubuntu:bad tag", "invalid tag"),
            ("ubuntu@sha256:zz", "invalid digest"),
            ("oci:", "names no directory"),
            ("", "empty"),
            ("localhost:5000/../etc", "invalid repository name"),
        ];
        for (input, want) in cases {
            let err = input.parse::<ImageReference>().unwrap_err().to_string();
            assert!(err.contains(want), "{input}: {err}");
            if !input.is_empty() {
                assert!(err.contains(&format!("{input:?}")), "{input}: {err}");
            }
        }
    }

    #[test]
    fn repo_and_tag_validation() {
        assert!(RepoName::new("a/b-c/d__e").is_ok());
        assert!(RepoName::new("a//b").is_err());
        assert!(RepoName::new("..").is_err());
        assert!(Tag::new("v1.2.3_x-y").is_ok());
        assert!(Tag::new(".hidden").is_err());
        assert!(Tag::new(&"a".repeat(129)).is_err());
    }

    #[test]
    fn loopback_detection() {
        for h in [
            "localhost",
            "localhost:5000",
            "LOCALHOST:1",
            "127.0.0.1",
            "127.1.2.3:80",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "docker.io",
            "10.0.0.1:5000",
            "registry.local:443",
            "[::2]:1",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}
