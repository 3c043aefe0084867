//! The `[events]` half of the resolve step: webhook senders (format,
//! registry, token or HMAC secret) and the event queue's bounds.

use super::super::file::{FileEvents, FileWebhookSource};
use super::super::{EventSettings, WebhookFormat, WebhookSource};
use super::*;

impl Resolver<'_> {
    pub(super) fn events(&mut self, e: FileEvents) -> Option<EventSettings> {
        let p = KeyPath::root().key("events");
        let before = self.problems.len();
        let debounce = match &e.debounce {
            Some(s) => self.duration(s, &p.key("debounce"))?,
            None => EventSettings::DEFAULT_DEBOUNCE,
        };
        let queue_capacity = self.positive(
            e.queue_capacity,
            EventSettings::DEFAULT_QUEUE_CAPACITY,
            &p.key("queue_capacity"),
        );
        let max_body_bytes = self.positive(
            e.max_body_bytes,
            EventSettings::DEFAULT_MAX_BODY_BYTES,
            &p.key("max_body_bytes"),
        );
        let mut sources = BTreeMap::new();
        for (name, value) in e.sources.iter().flatten() {
            let sp = p.key("sources").key(name.clone());
            if let Some(file) = self.table_required::<FileWebhookSource>(value, &sp)
                && let Some(source) = self.webhook_source(name, file, &sp)
            {
                sources.insert(name.clone(), source);
            }
        }
        (self.problems.len() == before).then_some(EventSettings {
            debounce,
            queue_capacity,
            max_body_bytes,
            sources,
        })
    }

    fn webhook_source(
        &mut self,
        name: &str,
        s: FileWebhookSource,
        p: &KeyPath,
    ) -> Option<WebhookSource> {
        let before = self.problems.len();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            self.problem(
                p,
                format!("invalid source name {name:?}: use letters, digits, '.', '_' and '-' (it is a URL path segment)"),
            );
        }
        let format = match s.format.as_deref() {
            Some(f) => WebhookFormat::parse(f).or_else(|| {
                let known: Vec<&str> = WebhookFormat::ALL.iter().map(|f| f.as_str()).collect();
                self.problem(
                    &p.key("format"),
                    format!("unknown format {f:?}: expected one of {}", known.join(", ")),
                );
                None
            }),
            None => {
                self.problem(&p.key("format"), "missing: set the sender's body format");
                None
            }
        };
        if s.registry.is_none() && format.is_some_and(|f| f != WebhookFormat::Generic) {
            self.problem(
                &p.key("registry"),
                "missing: name the registry host this sender speaks for, as jobs name it",
            );
        }
        let token = self.secret(s.token, s.token_file.as_ref(), p, "token");
        let hmac_secret = self.secret(s.hmac_secret, s.hmac_secret_file.as_ref(), p, "hmac_secret");
        if self.problems.len() == before && token.is_none() && hmac_secret.is_none() {
            self.problem(
                p,
                "unauthenticated webhook source: set token (or token_file) or hmac_secret (or hmac_secret_file)",
            );
        }
        if self.problems.len() != before {
            return None;
        }
        Some(WebhookSource {
            name: name.to_string(),
            format: format?,
            registry: s.registry,
            token,
            hmac_secret,
        })
    }
}
