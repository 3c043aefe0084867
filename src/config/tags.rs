//! Tag selection: allow/deny regexes, a semver range and "newest N".

use std::fmt;

use regex::Regex;
use semver::{Version, VersionReq};
use serde::{Serialize, Serializer};

use crate::oci::Digest;
use crate::oci::referrers::{is_cosign_tag, is_fallback_tag};

/// A regex that must match a whole string, keeping the pattern as written.
#[derive(Clone)]
pub struct Pattern {
    source: String,
    regex: Regex,
}

impl Pattern {
    /// Compiles `source`, anchored at both ends.
    pub fn new(source: &str) -> Result<Self, regex::Error> {
        Ok(Pattern {
            source: source.to_string(),
            regex: Regex::new(&format!("^(?:{source})$"))?,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when the whole of `s` matches.
    pub fn is_match(&self, s: &str) -> bool {
        self.regex.is_match(s)
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.source)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

/// Which tags of a repository a job copies.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TagSelector {
    /// A tag must match one of these (empty = all).
    pub allow: Vec<Pattern>,
    /// A matching tag is skipped.
    pub deny: Vec<Pattern>,
    /// Only semantic versions in this range.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_display"
    )]
    pub semver: Option<VersionReq>,
    /// Only the newest N semantic versions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest: Option<usize>,
    /// Manifests also copied by digest, untagged.
    #[serde(serialize_with = "ser_digests")]
    pub digests: Vec<Digest>,
}

impl TagSelector {
    /// The tags of `tags` to copy, in their input order, without
    /// duplicates. Fallback tags and cosign attachment tags are never
    /// selected: they are copied with the image they belong to.
    ///
    /// With `semver` or `newest`, tags that are not versions are dropped;
    /// `newest` keeps the N highest versions (by semver precedence).
    pub fn select(&self, tags: &[String]) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        let candidates: Vec<(&String, Option<Version>)> = tags
            .iter()
            .filter(|t| seen.insert(t.as_str()))
            .filter(|t| !is_fallback_tag(t) && !is_cosign_tag(t))
            .filter(|t| self.allow.is_empty() || self.allow.iter().any(|p| p.is_match(t)))
            .filter(|t| !self.deny.iter().any(|p| p.is_match(t)))
            .map(|t| (t, parse_version(t)))
            .filter(|(_, v)| match (&self.semver, self.newest, v) {
                (None, None, _) => true,
                (_, _, None) => false,
                (Some(req), _, Some(v)) => req.matches(v),
                (None, Some(_), Some(_)) => true,
            })
            .collect();
        let Some(n) = self.newest else {
            return candidates.into_iter().map(|(t, _)| t.clone()).collect();
        };
        let mut versions: Vec<&Version> =
            candidates.iter().filter_map(|(_, v)| v.as_ref()).collect();
        versions.sort_by(|a, b| b.cmp(a));
        // Tags that are the same version (`1.2` and `v1.2.0`) count once.
        versions.dedup();
        let keep: Vec<Version> = versions.into_iter().take(n).cloned().collect();
        candidates
            .into_iter()
            .filter(|(_, v)| v.as_ref().is_some_and(|v| keep.contains(v)))
            .map(|(t, _)| t.clone())
            .collect()
    }
}

/// Lenient semver: an optional leading `v`, and `1` / `1.2` as `1.0.0` /
/// `1.2.0`.
pub(crate) fn parse_version(tag: &str) -> Option<Version> {
    let s = tag.strip_prefix('v').unwrap_or(tag);
    if let Ok(v) = Version::parse(s) {
        return Some(v);
    }
    // Pad a short core (`1.2`, `1.2-rc1`) to three numbers.
    let split = s.find(['-', '+']).unwrap_or(s.len());
    let (core, rest) = s.split_at(split);
    let parts: Vec<&str> = core.split('.').collect();
    if parts.is_empty()
        || parts.len() > 2
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let padded = match parts.len() {
        1 => format!("{core}.0.0{rest}"),
        _ => format!("{core}.0{rest}"),
    };
    Version::parse(&padded).ok()
}

fn ser_opt_display<T: fmt::Display, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

fn ser_digests<S: Serializer>(ds: &[Digest], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(ds.iter().map(|d| d.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn pats(list: &[&str]) -> Vec<Pattern> {
        list.iter().map(|p| Pattern::new(p).unwrap()).collect()
    }

    const FALLBACK: &str =
        "sha256-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const COSIGN: &str =
        "sha256-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.sig";

    #[test]
    fn empty_selector_takes_every_user_tag_in_order() {
        let sel = TagSelector::default();
        let input = tags(&["latest", FALLBACK, "1.0", COSIGN, "dev", "latest"]);
        assert_eq!(sel.select(&input), tags(&["latest", "1.0", "dev"]));
    }

    #[test]
    fn allow_and_deny_match_whole_tags() {
        let sel = TagSelector {
            allow: pats(&[r"\d+\.\d+", "latest"]),
            deny: pats(&[r"1\.0"]),
            ..Default::default()
        };
        let input = tags(&["latest", "latest-debug", "1.0", "1.1", "1.1-rc1", "x1.2"]);
        assert_eq!(sel.select(&input), tags(&["latest", "1.1"]));
    }

    #[test]
    fn semver_range_drops_non_versions() {
        let sel = TagSelector {
            semver: Some(VersionReq::parse(">=1.2, <2").unwrap()),
            ..Default::default()
        };
        let input = tags(&["1.1.9", "v1.2", "1.5.3", "2.0.0", "latest", "1.3.0-rc1"]);
        // Pre-releases do not match a range without a pre-release (Cargo rules).
        assert_eq!(sel.select(&input), tags(&["v1.2", "1.5.3"]));
    }

    #[test]
    fn newest_keeps_the_highest_versions_in_input_order() {
        let sel = TagSelector {
            newest: Some(2),
            ..Default::default()
        };
        let input = tags(&["1.10.0", "1.9.0", "latest", "1.2", "1.11.1", "v1.10"]);
        // 1.11.1 and 1.10.0 are the two newest; `v1.10` is the same version.
        assert_eq!(sel.select(&input), tags(&["1.10.0", "1.11.1", "v1.10"]));
    }

    #[test]
    fn newest_combines_with_semver_and_deny() {
        let sel = TagSelector {
            deny: pats(&[".*-.*"]),
            semver: Some(VersionReq::parse("^3").unwrap()),
            newest: Some(1),
            ..Default::default()
        };
        let input = tags(&["3.18", "3.19", "3.20-rc1", "4.0", "3.19.1"]);
        assert_eq!(sel.select(&input), tags(&["3.19.1"]));
    }

    #[test]
    fn lenient_versions() {
        assert_eq!(parse_version("v1"), Some(Version::new(1, 0, 0)));
        assert_eq!(parse_version("1.2"), Some(Version::new(1, 2, 0)));
        assert_eq!(parse_version("1.2-rc1").unwrap().to_string(), "1.2.0-rc1");
        assert_eq!(parse_version("latest"), None);
        assert_eq!(parse_version("1..2"), None);
        assert_eq!(parse_version("1.2.3.4"), None);
    }
}
