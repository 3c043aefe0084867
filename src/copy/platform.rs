//! Platform filters: parsing `os/arch[/variant]`, normalising the way
//! containerd does, and strict matching against index entries.
//!
//! References: image-spec `image-index.md` (platform object); containerd
//! `platforms` `database.go` (normalisation); BuildKit attestation storage
//! (`unknown/unknown` entries annotated `vnd.docker.reference.digest`).

use std::fmt;
use std::str::FromStr;

use crate::oci::{Descriptor, Platform};

/// Annotation BuildKit puts on attestation manifests: the digest of the
/// platform manifest they describe.
pub const BUILDKIT_REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
/// Annotation BuildKit puts on attestation manifests: their role.
pub const BUILDKIT_REFERENCE_TYPE: &str = "vnd.docker.reference.type";

/// Why a platform string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    /// Not `os/arch[/variant]`.
    #[error(
        "invalid platform {0:?}: expected os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8"
    )]
    Invalid(String),
}

/// A wanted platform, normalised (`linux/arm64/v8` is `linux/arm64`).
/// Parsed once, from `os/arch[/variant]` (also when deserialised), and
/// serialised back as that string.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct PlatformSpec {
    /// Operating system, lower case (`macos` becomes `darwin`).
    pub os: String,
    /// Architecture (`x86_64` becomes `amd64`, `aarch64` becomes `arm64`).
    pub architecture: String,
    /// Variant after normalisation; `None` when the architecture has none.
    pub variant: Option<String>,
}

impl PlatformSpec {
    /// True when `platform` (an index entry's) is this platform after
    /// normalising both sides: equal os, architecture and variant. An entry
    /// without a variant matches a wanted platform whose normal form has
    /// none, and `arm` entries without a variant count as `v7`.
    pub fn matches(&self, platform: &Platform) -> bool {
        let (arch, variant) = normalize_arch(&platform.architecture, platform.variant.as_deref());
        normalize_os(&platform.os) == self.os
            && arch == self.architecture
            && variant == self.variant
    }
}

impl FromStr for PlatformSpec {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.trim().split('/').collect();
        let bad = || PlatformError::Invalid(s.to_string());
        let valid = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        };
        let (os, arch, variant) = match parts.as_slice() {
            [os, arch] if valid(os) && valid(arch) => (*os, *arch, None),
            [os, arch, variant] if valid(os) && valid(arch) && valid(variant) => {
                (*os, *arch, Some(*variant))
            }
            _ => return Err(bad()),
        };
        let (architecture, variant) = normalize_arch(arch, variant);
        Ok(PlatformSpec {
            os: normalize_os(os),
            architecture,
            variant,
        })
    }
}

impl fmt::Display for PlatformSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl TryFrom<String> for PlatformSpec {
    type Error = PlatformError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<PlatformSpec> for String {
    fn from(p: PlatformSpec) -> Self {
        p.to_string()
    }
}

/// containerd's `NormalizeOS`.
fn normalize_os(os: &str) -> String {
    let os = os.to_ascii_lowercase();
    if os == "macos" { "darwin".into() } else { os }
}

/// containerd's `NormalizeArch`: canonical architecture and variant.
fn normalize_arch(arch: &str, variant: Option<&str>) -> (String, Option<String>) {
    let arch = arch.to_ascii_lowercase();
    let variant = variant
        .map(|v| v.to_ascii_lowercase())
        .filter(|v| !v.is_empty());
    let (a, v): (&str, Option<String>) = match arch.as_str() {
        "i386" => ("386", None),
        "x86_64" | "x86-64" | "amd64" => (
            "amd64",
            // amd64/v1 is plain amd64.
            variant.filter(|v| v != "v1"),
        ),
        "aarch64" | "arm64" => (
            "arm64",
            match variant.as_deref() {
                None | Some("8" | "v8" | "v8.0") => None,
                Some("9" | "9.0" | "v9.0") => Some("v9".into()),
                Some(_) => variant,
            },
        ),
        "armhf" => ("arm", Some("v7".into())),
        "armel" => ("arm", Some("v6".into())),
        "arm" => (
            "arm",
            match variant.as_deref() {
                None | Some("7" | "v7") => Some("v7".into()),
                Some("5" | "v5") => Some("v5".into()),
                Some("6" | "v6") => Some("v6".into()),
                Some("8" | "v8") => Some("v8".into()),
                Some(_) => variant,
            },
        ),
        _ => return (arch.clone(), variant),
    };
    (a.to_string(), v)
}

/// True for a BuildKit attestation manifest entry (`unknown/unknown` with
/// `vnd.docker.reference.digest`).
pub fn is_attestation_entry(desc: &Descriptor) -> bool {
    desc.platform
        .as_ref()
        .is_some_and(|p| p.os == "unknown" && p.architecture == "unknown")
        && desc.annotations.contains_key(BUILDKIT_REFERENCE_DIGEST)
}

/// The entries of an index that a platform filter keeps: every entry whose
/// platform matches one of `wanted`, plus the BuildKit attestation manifests
/// of kept entries. Entries without a platform are dropped.
pub fn select_entries<'a>(
    entries: &'a [Descriptor],
    wanted: &[PlatformSpec],
) -> Vec<&'a Descriptor> {
    let kept: Vec<&Descriptor> = entries
        .iter()
        .filter(|e| {
            !is_attestation_entry(e)
                && e.platform
                    .as_ref()
                    .is_some_and(|p| wanted.iter().any(|w| w.matches(p)))
        })
        .collect();
    entries
        .iter()
        .filter(|e| {
            kept.iter().any(|k| std::ptr::eq(*k, *e))
                || (is_attestation_entry(e)
                    && e.annotations
                        .get(BUILDKIT_REFERENCE_DIGEST)
                        .is_some_and(|d| kept.iter().any(|k| k.digest.to_string() == *d)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Digest;

    fn p(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            architecture: arch.into(),
            os: os.into(),
            os_version: None,
            os_features: Vec::new(),
            variant: variant.map(Into::into),
        }
    }

    #[test]
    fn parse_normalises() {
        let cases = [
            ("linux/amd64", "linux/amd64"),
            ("linux/x86_64", "linux/amd64"),
            ("linux/amd64/v1", "linux/amd64"),
            ("linux/amd64/v3", "linux/amd64/v3"),
            ("Linux/AArch64", "linux/arm64"),
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/arm64/8", "linux/arm64"),
            ("linux/arm64/v9.0", "linux/arm64/v9"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/armhf", "linux/arm/v7"),
            ("linux/armel", "linux/arm/v6"),
            ("linux/arm/6", "linux/arm/v6"),
            ("linux/i386", "linux/386"),
            ("macos/arm64", "darwin/arm64"),
            ("windows/amd64", "windows/amd64"),
        ];
        for (input, want) in cases {
            let spec: PlatformSpec = input.parse().unwrap();
            assert_eq!(spec.to_string(), want, "{input}");
        }
        for bad in [
            "",
            "linux",
            "linux/",
            "/amd64",
            "linux/amd64/v8/x",
            "linux/am d64",
        ] {
            assert!(bad.parse::<PlatformSpec>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn matching_table() {
        let cases: [(&str, Platform, bool); 10] = [
            ("linux/amd64", p("linux", "amd64", None), true),
            ("linux/amd64", p("linux", "arm64", None), false),
            ("linux/amd64", p("windows", "amd64", None), false),
            ("linux/arm64/v8", p("linux", "arm64", None), true),
            ("linux/arm64", p("linux", "arm64", Some("v8")), true),
            ("linux/arm64", p("linux", "aarch64", None), true),
            ("linux/arm/v7", p("linux", "arm", None), true),
            ("linux/arm/v7", p("linux", "arm", Some("v6")), false),
            ("linux/amd64/v3", p("linux", "amd64", None), false),
            ("linux/amd64", p("linux", "amd64", Some("v1")), true),
        ];
        for (spec, platform, want) in cases {
            let s: PlatformSpec = spec.parse().unwrap();
            assert_eq!(s.matches(&platform), want, "{spec} vs {platform:?}");
        }
    }

    #[test]
    fn attestations_follow_their_platform() {
        let entry = |n: u8, plat: Platform| {
            let mut d = Descriptor::new(
                crate::oci::media_type::OCI_MANIFEST,
                Digest::sha256(&[n]),
                1,
            );
            d.platform = Some(plat);
            d
        };
        let amd = entry(1, p("linux", "amd64", None));
        let arm = entry(2, p("linux", "arm64", None));
        let mut att_amd = entry(3, p("unknown", "unknown", None));
        att_amd
            .annotations
            .insert(BUILDKIT_REFERENCE_DIGEST.into(), amd.digest.to_string());
        att_amd.annotations.insert(
            BUILDKIT_REFERENCE_TYPE.into(),
            "attestation-manifest".into(),
        );
        let mut att_arm = entry(4, p("unknown", "unknown", None));
        att_arm
            .annotations
            .insert(BUILDKIT_REFERENCE_DIGEST.into(), arm.digest.to_string());
        let entries = vec![amd.clone(), arm.clone(), att_amd.clone(), att_arm];
        let wanted = vec!["linux/amd64".parse().unwrap()];
        let kept: Vec<Descriptor> = select_entries(&entries, &wanted)
            .into_iter()
            .cloned()
            .collect();
        assert_eq!(kept, vec![amd, att_amd]);
        let none: Vec<PlatformSpec> = vec!["linux/s390x".parse().unwrap()];
        assert!(select_entries(&entries, &none).is_empty());
    }

    #[test]
    fn serde_uses_the_normalised_string() {
        let specs: Vec<PlatformSpec> =
            serde_json::from_str(r#"["linux/aarch64", "linux/arm/v7"]"#).unwrap();
        assert_eq!(specs[0], "linux/arm64".parse().unwrap());
        assert_eq!(
            serde_json::to_string(&specs).unwrap(),
            r#"["linux/arm64","linux/arm/v7"]"#
        );
        let bad = serde_json::from_str::<PlatformSpec>(r#""linux""#).unwrap_err();
        assert!(bad.to_string().contains("os/arch"), "{bad}");
    }
}
