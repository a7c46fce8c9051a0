//! Kafka's listener model (`listeners`, `listener.security.protocol.map`,
//! `advertised.listeners`, `inter.broker.listener.name`) and the per-listener overrides
//! `listener.name.<lower-case name>.<key>` (Kafka's `ListenerName.configPrefix`).
//!
//! A broker binds every listener, registers all of them (RegisterBroker endpoints), answers
//! Metadata with the endpoints of the listener a request came in on, and dials the
//! inter-broker listener of its peers. Fjord's older single-listener keys stay: `listen` is the
//! canonical name of `listeners` and a bare `HOST:PORT` is one `PLAINTEXT` listener;
//! `advertised.listener` is `advertised.listeners`.

use std::collections::BTreeMap;

use crate::security::SecurityProtocol;

/// Listeners one broker may have (design section 3).
pub const LISTENERS_MAX: usize = 16;

/// Prefix of per-listener overrides: `listener.name.<name>.<key>`.
pub const LISTENER_OVERRIDE_PREFIX: &str = "listener.name.";

/// One bound listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// As written in `listeners`, upper case (`PLAINTEXT`, `INTERNAL`).
    pub name: String,
    /// HOST:PORT the listener binds.
    pub bind: String,
    pub security_protocol: SecurityProtocol,
    /// What this listener registers and clients are given.
    pub advertised_host: String,
    pub advertised_port: u16,
}

/// Parses `NAME:PROTOCOL,...`.
pub fn parse_protocol_map(value: &str) -> Result<BTreeMap<String, SecurityProtocol>, String> {
    let mut map = BTreeMap::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, protocol) = entry
            .split_once(':')
            .ok_or_else(|| format!("'{entry}' is not NAME:PROTOCOL"))?;
        let name = checked_name(name.trim())?;
        let protocol = SecurityProtocol::parse(protocol.trim()).ok_or_else(|| {
            format!("unknown security protocol '{protocol}' (PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL)")
        })?;
        if map.insert(name.clone(), protocol).is_some() {
            return Err(format!("listener {name} is mapped twice"));
        }
    }
    Ok(map)
}

/// A listener name: letters, digits and `_`, compared upper case (Kafka's `ListenerName`
/// normalises to upper case).
fn checked_name(name: &str) -> Result<String, String> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "'{name}' is not a listener name (letters, digits and _)"
        ));
    }
    Ok(name.to_ascii_uppercase())
}

/// Splits `NAME://HOST:PORT` (or a bare `HOST:PORT`, which is `PLAINTEXT`) into the name and
/// the validated host and port.
fn parse_entry(entry: &str) -> Result<(String, String, u16), String> {
    let (name, address) = match entry.split_once("://") {
        Some((name, address)) => (checked_name(name.trim())?, address.trim()),
        None => (SecurityProtocol::Plaintext.name().to_string(), entry),
    };
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("'{entry}' is not NAME://HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("port of '{entry}' must be 0-65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("host of '{entry}' is empty"));
    }
    Ok((name, host.to_string(), port))
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Which setting a listener error is about, and why.
pub type ListenerError = (&'static str, String);

/// Validates the listener settings as Kafka's `KafkaConfig.validateValues` does: unique names,
/// a security protocol for every name, advertised entries only for bound listeners, an
/// inter-broker listener that exists. Returns the listeners in `listeners` order and the
/// inter-broker listener's name.
pub fn parse_listeners(
    listeners: &str,
    protocol_map: &str,
    advertised: &str,
    inter_broker: &str,
) -> Result<(Vec<ListenerConfig>, String), ListenerError> {
    let map = parse_protocol_map(protocol_map)
        .map_err(|reason| ("listener.security.protocol.map", reason))?;
    let mut parsed: Vec<ListenerConfig> = Vec::new();
    for entry in listeners
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let (name, host, port) = parse_entry(entry).map_err(|reason| ("listen", reason))?;
        if parsed.iter().any(|l| l.name == name) {
            return Err(("listen", format!("listener {name} is listed twice")));
        }
        let security_protocol = match map.get(&name) {
            Some(protocol) => *protocol,
            None => SecurityProtocol::parse(&name).ok_or_else(|| {
                (
                    "listener.security.protocol.map",
                    format!("listener {name} has no security protocol: add {name}:PROTOCOL"),
                )
            })?,
        };
        parsed.push(ListenerConfig {
            bind: host_port(&host, port),
            name,
            security_protocol,
            advertised_host: host,
            advertised_port: port,
        });
    }
    if parsed.is_empty() {
        return Err(("listen", "at least one listener is needed".into()));
    }
    if parsed.len() > LISTENERS_MAX {
        return Err(("listen", format!("at most {LISTENERS_MAX} listeners")));
    }
    let mut advertised_names: Vec<String> = Vec::new();
    for entry in advertised
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let (name, host, port) = if entry.contains("://") {
            parse_entry(entry)
        } else {
            // Fjord's single advertised address: the first listener's.
            parse_entry(entry).map(|(_, host, port)| (parsed[0].name.clone(), host, port))
        }
        .map_err(|reason| ("advertised.listener", reason))?;
        if advertised_names.contains(&name) {
            return Err((
                "advertised.listener",
                format!("listener {name} is advertised twice"),
            ));
        }
        if host == "0.0.0.0" || host == "::" {
            return Err((
                "advertised.listener",
                format!("{host} cannot be advertised: clients cannot dial it"),
            ));
        }
        let listener = parsed.iter_mut().find(|l| l.name == name).ok_or_else(|| {
            (
                "advertised.listener",
                format!("{name} is not one of the listeners"),
            )
        })?;
        listener.advertised_host = host;
        listener.advertised_port = port;
        advertised_names.push(name);
    }
    let inter_broker = match inter_broker.trim() {
        "" => parsed[0].name.clone(),
        name => {
            let name = checked_name(name).map_err(|r| ("inter.broker.listener.name", r))?;
            if !parsed.iter().any(|l| l.name == name) {
                return Err((
                    "inter.broker.listener.name",
                    format!("{name} is not one of the listeners"),
                ));
            }
            name
        }
    };
    Ok((parsed, inter_broker))
}

/// `controller.listener.names` default (Kafka's conventional name).
pub const CONTROLLER_LISTENER_NAME_DEFAULT: &str = "CONTROLLER";

/// Validates `controller.listener.names` (Kafka `KafkaConfig.controllerListenerNames`) for
/// Fjord's one controller listener (`controller.listen`): exactly one name, not one of the Kafka
/// listeners (its `listener.name.<name>.ssl.*` overrides must be its own). Its security
/// protocol is the name's entry in `listener.security.protocol.map`, else the name itself if
/// it is a protocol name, else PLAINTEXT (Fjord's controller listener before names existed).
/// PLAINTEXT and SSL are supported; SASL_PLAINTEXT and SASL_SSL are refused: Kafka supports
/// SASL there (`sasl.mechanism.controller.protocol`), Fjord's controller clients (Raft links,
/// the controller channel, observers) do not authenticate with SASL yet, so a SASL
/// controller listener could not form a quorum. mTLS (SSL with `ssl.client.auth=required`) is
/// the supported way to authenticate nodes to each other.
pub fn parse_controller_listener(
    names: &str,
    protocol_map: &str,
    listeners: &[ListenerConfig],
) -> Result<(String, SecurityProtocol), ListenerError> {
    const KEY: &str = "controller.listener.names";
    let names: Vec<&str> = names
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    let name = match names.as_slice() {
        [] => return Err((KEY, "one listener name is needed (Kafka's default: CONTROLLER)".into())),
        [name] => checked_name(name).map_err(|reason| (KEY, reason))?,
        _ => {
            return Err((
                KEY,
                format!(
                    "{} names given: Fjord has one controller listener (controller.listen), so exactly one name is supported",
                    names.len()
                ),
            ))
        }
    };
    if listeners.iter().any(|l| l.name == name) {
        return Err((
            KEY,
            format!("{name} is also one of the Kafka listeners (listen): the controller listener (controller.listen) needs a name of its own"),
        ));
    }
    let map = parse_protocol_map(protocol_map)
        .map_err(|reason| ("listener.security.protocol.map", reason))?;
    let protocol = map
        .get(&name)
        .copied()
        .or_else(|| SecurityProtocol::parse(&name))
        .unwrap_or(SecurityProtocol::Plaintext);
    if protocol.uses_sasl() {
        return Err((
            KEY,
            format!("the controller listener {name} maps to {protocol}: SASL on the controller listener is not supported yet (nodes do not authenticate to controllers with SASL); use SSL with ssl.client.auth=required (mTLS) or PLAINTEXT"),
        ));
    }
    Ok((name, protocol))
}

/// `listener.name.<name>.<key>` split into the upper-case listener name and the key, if `key`
/// has that form.
pub fn split_listener_override(key: &str) -> Option<(String, &str)> {
    let rest = key.strip_prefix(LISTENER_OVERRIDE_PREFIX)?;
    let (name, key) = rest.split_once('.')?;
    let name = checked_name(name).ok()?;
    Some((name, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_address_is_one_plaintext_listener() {
        let (listeners, inter) = parse_listeners("127.0.0.1:9092", "", "", "").unwrap();
        assert_eq!(listeners.len(), 1);
        assert_eq!(listeners[0].name, "PLAINTEXT");
        assert_eq!(listeners[0].security_protocol, SecurityProtocol::Plaintext);
        assert_eq!(listeners[0].bind, "127.0.0.1:9092");
        assert_eq!(inter, "PLAINTEXT");
        // The old single advertised address goes to that listener.
        let (listeners, _) = parse_listeners("0.0.0.0:9092", "", "broker1:19092", "").unwrap();
        assert_eq!(listeners[0].advertised_host, "broker1");
        assert_eq!(listeners[0].advertised_port, 19092);
    }

    #[test]
    fn named_listeners_map_to_protocols_and_advertise_per_name() {
        let (listeners, inter) = parse_listeners(
            "INTERNAL://0.0.0.0:9093,EXTERNAL://0.0.0.0:9094,SSL://127.0.0.1:9095",
            "internal:SSL,EXTERNAL:sasl_ssl",
            "EXTERNAL://kafka.example.com:443",
            "internal",
        )
        .unwrap();
        let protocols: Vec<_> = listeners
            .iter()
            .map(|l| (l.name.as_str(), l.security_protocol))
            .collect();
        assert_eq!(
            protocols,
            [
                ("INTERNAL", SecurityProtocol::Ssl),
                ("EXTERNAL", SecurityProtocol::SaslSsl),
                ("SSL", SecurityProtocol::Ssl)
            ]
        );
        assert_eq!(inter, "INTERNAL");
        assert_eq!(listeners[1].advertised_host, "kafka.example.com");
        assert_eq!(listeners[1].advertised_port, 443);
        assert_eq!(listeners[1].bind, "0.0.0.0:9094");
        assert_eq!(listeners[0].advertised_host, "0.0.0.0");
    }

    #[test]
    fn listener_mistakes_name_the_setting() {
        let key = |l: &str, m: &str, a: &str, i: &str| parse_listeners(l, m, a, i).unwrap_err().0;
        assert_eq!(key("", "", "", ""), "listen");
        assert_eq!(key("PLAINTEXT://h:1,PLAINTEXT://h:2", "", "", ""), "listen");
        assert_eq!(key("PLAINTEXT://h", "", "", ""), "listen");
        assert_eq!(key("BAD NAME://h:1", "", "", ""), "listen");
        assert_eq!(
            key("INTERNAL://h:1", "", "", ""),
            "listener.security.protocol.map"
        );
        assert_eq!(
            key("INTERNAL://h:1", "INTERNAL:TLS", "", ""),
            "listener.security.protocol.map"
        );
        assert_eq!(
            key("PLAINTEXT://h:1", "", "SSL://h:2", ""),
            "advertised.listener"
        );
        assert_eq!(
            key("PLAINTEXT://h:1", "", "0.0.0.0:1", ""),
            "advertised.listener"
        );
        assert_eq!(
            key("PLAINTEXT://h:1", "", "", "SSL"),
            "inter.broker.listener.name"
        );
        let many: Vec<String> = (0..17).map(|i| format!("L{i}://h:{}", 1000 + i)).collect();
        let map: Vec<String> = (0..17).map(|i| format!("L{i}:PLAINTEXT")).collect();
        assert_eq!(key(&many.join(","), &map.join(","), "", ""), "listen");
    }

    #[test]
    fn the_controller_listener_has_one_name_and_plaintext_or_ssl() {
        let (listeners, _) =
            parse_listeners("PLAINTEXT://h:1,INTERNAL://h:2", "INTERNAL:SSL", "", "").unwrap();
        let parse = |names: &str, map: &str| parse_controller_listener(names, map, &listeners);
        // The default: CONTROLLER, absent from the map: PLAINTEXT as before names existed.
        assert_eq!(
            parse(CONTROLLER_LISTENER_NAME_DEFAULT, "").unwrap(),
            ("CONTROLLER".to_string(), SecurityProtocol::Plaintext)
        );
        assert_eq!(
            parse("controller", "INTERNAL:SSL,CONTROLLER:SSL").unwrap(),
            ("CONTROLLER".to_string(), SecurityProtocol::Ssl)
        );
        assert_eq!(
            parse(" CTRL ", "ctrl:plaintext").unwrap(),
            ("CTRL".to_string(), SecurityProtocol::Plaintext)
        );
        // A protocol name maps to itself.
        assert_eq!(parse("SSL", "").unwrap().1, SecurityProtocol::Ssl);
        let key = |names: &str, map: &str| parse(names, map).unwrap_err();
        assert_eq!(key("", "").0, "controller.listener.names");
        let (k, reason) = key("CONTROLLER,CONTROLLER2", "");
        assert_eq!(k, "controller.listener.names");
        assert!(reason.contains("exactly one"), "{reason}");
        assert_eq!(key("BAD NAME", "").0, "controller.listener.names");
        // The name of a Kafka listener is refused: its ssl overrides would be shared.
        assert_eq!(
            key("INTERNAL", "INTERNAL:SSL").0,
            "controller.listener.names"
        );
        for sasl in ["SASL_PLAINTEXT", "SASL_SSL"] {
            let (k, reason) = key("CONTROLLER", &format!("CONTROLLER:{sasl}"));
            assert_eq!(k, "controller.listener.names");
            assert!(
                reason.contains("SASL") && reason.contains("not supported"),
                "{reason}"
            );
        }
        assert_eq!(key("SASL_SSL", "").0, "controller.listener.names");
        assert_eq!(
            key("CONTROLLER", "CONTROLLER:TLS").0,
            "listener.security.protocol.map"
        );
    }

    #[test]
    fn overrides_split_into_listener_and_key() {
        assert_eq!(
            split_listener_override("listener.name.internal.ssl.client.auth"),
            Some(("INTERNAL".to_string(), "ssl.client.auth"))
        );
        assert_eq!(split_listener_override("listener.name.x"), None);
        assert_eq!(split_listener_override("ssl.client.auth"), None);
    }
}
