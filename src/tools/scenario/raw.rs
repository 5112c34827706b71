//! The scenario file as written: the serde types `toml` reads it into, before any check.
//! Apart so that the keys a file may hold are in one place, where [`file_keys`] reads them.

use std::collections::BTreeMap;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::model::{Action, Dur, Expect, WaitFor};
use crate::lb::config::Settings;
use crate::lb::l4::L4Flavour;
use crate::lb::profile::{Cloud, LbDefaults};
use crate::lb::targets::TargetState;
use crate::lb::validate::DesyncMode;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScenario {
    pub(super) description: Spanned<String>,
    pub(super) why: Option<String>,
    pub(super) fix: Option<String>,
    pub(super) cloud: Cloud,
    pub(super) time_scale: Option<Spanned<f64>>,
    /// A cloud's TCP load balancer in front (`--l4`), by its CLI name.
    pub(super) l4: Option<Spanned<L4Flavour>>,
    /// Its idle timeout per TCP flow (`--l4-idle-timeout`, cloud time).
    pub(super) l4_idle_timeout: Option<Spanned<Dur>>,
    /// Every load-balancer setting, as the CLI takes them: the one [`Settings`] type.
    pub(super) lb: Option<Spanned<Settings>>,
    #[serde(default)]
    pub(super) targets: Vec<Spanned<RawTarget>>,
    pub(super) steps: Vec<Spanned<RawStep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    pub(super) name: String,
    #[serde(default)]
    pub(super) kind: KindName,
    pub(super) keep_alive: Option<Dur>,
    pub(super) latency: Option<Dur>,
    pub(super) max_ongoing_requests: Option<usize>,
    pub(super) max_queued_requests: Option<usize>,
    pub(super) request_timeout: Option<Dur>,
    pub(super) address: Option<String>,
    pub(super) registered: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStep {
    pub(super) note: Option<String>,
    pub(super) send: Option<Spanned<String>>,
    pub(super) body: Option<String>,
    pub(super) headers: Option<BTreeMap<String, String>>,
    pub(super) conn: Option<String>,
    pub(super) concurrent: Option<u32>,
    pub(super) background: Option<bool>,
    pub(super) expect: Option<Spanned<Expect>>,
    pub(super) wait: Option<Dur>,
    pub(super) join: Option<bool>,
    pub(super) target: Option<Spanned<String>>,
    pub(super) action: Option<Action>,
    pub(super) wait_for: Option<WaitFor>,
    pub(super) timeout: Option<Dur>,
    pub(super) state: Option<TargetState>,
    pub(super) requests: Option<u64>,
    pub(super) connections: Option<u64>,
    pub(super) idle_closes: Option<u64>,
}

/// The keys a scenario file accepts, table by table (`top level`, `[lb]`, `[[targets]]`,
/// `[[steps]]`, `expect`), read from the parser's own serde types rather than listed by
/// hand, so that a key added to a `Raw*` struct shows up here and the test that holds
/// `scenarios/README.md` to this list fails until the key is documented.
#[doc(hidden)]
pub fn file_keys() -> Vec<(&'static str, &'static [&'static str])> {
    vec![
        ("top level", serde_names::<RawScenario>()),
        ("[lb]", serde_names::<Settings>()),
        ("[[targets]]", serde_names::<RawTarget>()),
        ("[[steps]]", serde_names::<RawStep>()),
        ("expect", serde_names::<Expect>()),
    ]
}

/// The words each key with a fixed set of values accepts (`cloud = "aws"`, ...), read from
/// the serde enums the parser uses; see [`file_keys`].
#[doc(hidden)]
pub fn file_values() -> Vec<(&'static str, &'static [&'static str])> {
    vec![
        ("cloud", serde_names::<Cloud>()),
        ("l4", serde_names::<L4Flavour>()),
        ("lb_defaults", serde_names::<LbDefaults>()),
        ("desync_mode", serde_names::<DesyncMode>()),
        ("kind", serde_names::<KindName>()),
        ("action", serde_names::<Action>()),
        ("wait_for", serde_names::<WaitFor>()),
        ("state", serde_names::<TargetState>()),
    ]
}

/// The field names of a derived-`Deserialize` struct, or the variant names of an enum, as
/// serde spells them in a file (after `rename`): the derive hands them to the deserializer,
/// and this one only records them and stops.
fn serde_names<T: de::DeserializeOwned>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("neither a struct nor an enum"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("names recorded"))
        }
        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _: &'static str,
            variants: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = variants;
            Err(de::Error::custom("names recorded"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
            identifier ignored_any
        }
    }
    let mut names: &'static [&'static str] = &[];
    // The probe always ends in an error once it has the names; the error says nothing.
    let _ = T::deserialize(Probe(&mut names));
    names
}

impl RawStep {
    /// Names of the keys present, in declaration order.
    pub(super) fn present(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        let mut add = |on: bool, k: &'static str| {
            if on {
                keys.push(k)
            }
        };
        add(self.send.is_some(), "send");
        add(self.body.is_some(), "body");
        add(self.headers.is_some(), "headers");
        add(self.conn.is_some(), "conn");
        add(self.concurrent.is_some(), "concurrent");
        add(self.background.is_some(), "background");
        add(self.expect.is_some(), "expect");
        add(self.wait.is_some(), "wait");
        add(self.join.is_some(), "join");
        add(self.target.is_some(), "target");
        add(self.action.is_some(), "action");
        add(self.wait_for.is_some(), "wait_for");
        add(self.timeout.is_some(), "timeout");
        add(self.state.is_some(), "state");
        add(self.requests.is_some(), "requests");
        add(self.connections.is_some(), "connections");
        add(self.idle_closes.is_some(), "idle_closes");
        keys
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum KindName {
    #[default]
    Mock,
    External,
    Closed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_serde() {
        let keys = file_keys();
        assert_eq!(keys[0].1[0], "description");
        assert!(keys.iter().all(|(_, k)| !k.is_empty()), "{keys:?}");
        let values = file_values();
        assert_eq!(
            values[0],
            ("cloud", &["aws", "gcp", "gcp-classic", "ingress-nginx"][..])
        );
    }
}
