//! ingress-nginx's own settings, as a team has them written down: the per-Ingress
//! annotations (`metadata.annotations`, `nginx.ingress.kubernetes.io/…`) of an Ingress
//! manifest, or the `data` of the controller's ConfigMap, read into [`Settings`] so that
//! `lbsim --cloud ingress-nginx --ingress-config FILE` times out where the cluster would.
//!
//! Sources: ingress-nginx's annotations reference ("Custom timeouts": proxy-connect-timeout,
//! proxy-send-timeout, proxy-read-timeout, proxy-next-upstream, proxy-next-upstream-tries;
//! values are numbers of seconds without a unit) and its ConfigMap reference (the same keys
//! without the prefix, plus keep-alive and upstream-keepalive-timeout). Confidence: high for
//! the key names and units (both references), medium for the mapping of `keep-alive` onto
//! lbsim's client idle timeout.

use std::time::Duration;

use crate::lb::config::Settings;

/// The prefix of ingress-nginx's annotations on an Ingress.
const PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// What reading a file did, key by key, for the user to see.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Applied {
    /// `key value → lbsim setting` for each value taken.
    pub(crate) taken: Vec<String>,
    /// `key: why` for each ingress-nginx key lbsim does not model (or not at that value).
    pub(crate) ignored: Vec<String>,
}

/// Why a file could not be read as ingress-nginx settings.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AnnotationsError {
    /// Not YAML, or no annotations / data mapping in it.
    #[error("{0}")]
    Shape(String),
    /// A timeout that is not a whole number of seconds.
    #[error("{key}: `{value}` is not a number of seconds (ingress-nginx takes e.g. \"120\")")]
    Seconds {
        /// The key as written.
        key: String,
        /// Its value.
        value: String,
    },
}

/// Reads the ingress-nginx keys of `yaml` (an Ingress manifest or the controller's
/// ConfigMap) into `settings`, leaving alone every setting already given (a flag wins
/// over the file).
pub(crate) fn apply(yaml: &str, settings: &mut Settings) -> Result<Applied, AnnotationsError> {
    let doc: serde_norway::Value = serde_norway::from_str(yaml)
        .map_err(|e| AnnotationsError::Shape(format!("not YAML: {e}")))?;
    let (map, prefix) = if let Some(m) = doc
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.as_mapping())
    {
        (m, PREFIX)
    } else if let Some(m) = doc.get("data").and_then(|d| d.as_mapping()) {
        (m, "")
    } else {
        return Err(AnnotationsError::Shape(
            "expected an Ingress (metadata.annotations) or the controller's ConfigMap (data)"
                .to_string(),
        ));
    };
    let mut applied = Applied::default();
    for (k, v) in map {
        let (Some(full), Some(value)) = (k.as_str(), scalar(v)) else {
            continue;
        };
        let Some(key) = full.strip_prefix(prefix) else {
            continue;
        };
        let seconds = || -> Result<Duration, AnnotationsError> {
            value
                .trim()
                .parse::<u64>()
                .map(Duration::from_secs)
                .map_err(|_| AnnotationsError::Seconds {
                    key: full.to_string(),
                    value: value.clone(),
                })
        };
        let mut take = |slot: &mut Option<Duration>, flag: &str| -> Result<(), AnnotationsError> {
            let d = seconds()?;
            if slot.is_none() {
                *slot = Some(d);
                applied
                    .taken
                    .push(format!("{key} {value} → {flag} {}s", d.as_secs()));
            } else {
                applied
                    .ignored
                    .push(format!("{key}: {flag} was given on the command line"));
            }
            Ok(())
        };
        match key {
            "proxy-read-timeout" => take(&mut settings.idle_timeout, "--idle-timeout")?,
            "proxy-connect-timeout" => take(&mut settings.connect_timeout, "--connect-timeout")?,
            "keep-alive" => take(&mut settings.client_keep_alive, "--client-keep-alive")?,
            "proxy-next-upstream" if value.trim() == "off" => {
                settings.no_retry = true;
                applied.taken.push(format!("{key} off → --no-retry"));
            }
            "proxy-next-upstream" if value.split_whitespace().eq(["error", "timeout"]) => {
                applied.taken.push(format!("{key} {value} → the default"));
            }
            "proxy-next-upstream-tries" if value.trim() == "3" => {
                applied.taken.push(format!("{key} 3 → the default"));
            }
            "proxy-next-upstream" | "proxy-next-upstream-tries" => applied.ignored.push(format!(
                "{key} {value}: lbsim models only the default (error timeout, 3 tries) or off"
            )),
            "proxy-send-timeout" => applied.ignored.push(format!(
                "{key}: lbsim times the app's reads only (the request body is sent as it comes)"
            )),
            "upstream-keepalive-timeout" => applied.ignored.push(format!(
                "{key}: lbsim keeps ingress-nginx's default 60 s towards the app"
            )),
            other if other.starts_with("proxy-") || other.starts_with("upstream-") => applied
                .ignored
                .push(format!("{other}: not a timer or retry lbsim models")),
            _ => {}
        }
    }
    Ok(applied)
}

/// A YAML scalar as text (annotation values are strings, but a ConfigMap written by hand
/// may hold a bare number).
fn scalar(v: &serde_norway::Value) -> Option<String> {
    match v {
        serde_norway::Value::String(s) => Some(s.clone()),
        serde_norway::Value::Number(n) => Some(n.to_string()),
        serde_norway::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::profile::Cloud;

    #[test]
    fn an_ingress_annotations_set_the_timers_and_flags_win() {
        let yaml = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: serve
  annotations:
    nginx.ingress.kubernetes.io/proxy-read-timeout: "120"
    nginx.ingress.kubernetes.io/proxy-connect-timeout: "3"
    nginx.ingress.kubernetes.io/proxy-send-timeout: "120"
    nginx.ingress.kubernetes.io/proxy-next-upstream: "off"
    kubernetes.io/ingress.class: nginx
"#;
        let mut s = Settings::new(Cloud::IngressNginx);
        s.connect_timeout = Some(Duration::from_secs(1));
        let applied = apply(yaml, &mut s).unwrap();
        assert_eq!(s.idle_timeout, Some(Duration::from_secs(120)));
        assert_eq!(
            s.connect_timeout,
            Some(Duration::from_secs(1)),
            "the flag wins"
        );
        assert!(s.no_retry);
        assert_eq!(
            applied.taken,
            [
                "proxy-read-timeout 120 → --idle-timeout 120s",
                "proxy-next-upstream off → --no-retry"
            ]
        );
        assert_eq!(
            applied.ignored,
            [
                "proxy-connect-timeout: --connect-timeout was given on the command line",
                "proxy-send-timeout: lbsim times the app's reads only (the request body is sent as it comes)",
            ]
        );
    }

    #[test]
    fn a_configmap_is_read_without_the_prefix() {
        let yaml = "kind: ConfigMap\ndata:\n  proxy-read-timeout: 300\n  keep-alive: \"75\"\n  upstream-keepalive-timeout: \"60\"\n";
        let mut s = Settings::new(Cloud::IngressNginx);
        let applied = apply(yaml, &mut s).unwrap();
        assert_eq!(s.idle_timeout, Some(Duration::from_secs(300)));
        assert_eq!(s.client_keep_alive, Some(Duration::from_secs(75)));
        assert_eq!(applied.ignored.len(), 1, "{applied:?}");
    }

    #[test]
    fn bad_files_say_what_was_expected() {
        let mut s = Settings::new(Cloud::IngressNginx);
        let e = apply("kind: Service\nspec: {}\n", &mut s).unwrap_err();
        assert!(e.to_string().contains("metadata.annotations"), "{e}");
        let e = apply(
            "metadata:\n  annotations:\n    nginx.ingress.kubernetes.io/proxy-read-timeout: 2m\n",
            &mut s,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "nginx.ingress.kubernetes.io/proxy-read-timeout: `2m` is not a number of seconds \
             (ingress-nginx takes e.g. \"120\")"
        );
        assert!(apply(": : :", &mut s).is_err());
    }
}
