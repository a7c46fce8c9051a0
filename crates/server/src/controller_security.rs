//! Security of the controller listener (`controller.listen`, named by
//! `controller.listener.names`, docs/security-design.md section 1): Kafka's `CONTROLLER`
//! listener with its own security protocol.
//!
//! * [`ControllerTls`]: when the listener's protocol (its name's entry in
//!   `listener.security.protocol.map`) is SSL, the server side a voter accepts with (a
//!   [`ListenerTls`]: keystore, `ssl.client.auth`, the mTLS principal through
//!   `ssl.principal.mapping.rules`, certificate reload) and the client side every node dials the
//!   voters with (Raft links, the controller channel, observers' FetchMetadata): the truststore,
//!   the keystore as client certificate, `ssl.endpoint.identification.algorithm` against the
//!   host `controller.quorum.voters` names. Both resolve `listener.name.<name>.ssl.*` over
//!   `ssl.*`, exactly like the Kafka listeners. SASL there is refused by the config.
//! * [`ControllerAccess`]: the authorization of one connection when `authorizer.class.name` is
//!   set (Kafka `ControllerApis` through `AuthHelper.authorizeClusterOperation`): Raft messages,
//!   observers' FetchMetadata and the controller APIs need CLUSTER_ACTION on the Cluster
//!   resource, DescribeQuorum needs DESCRIBE, ApiVersions nothing; super users pass. Only an
//!   SSL listener is authorized: on PLAINTEXT every caller is ANONYMOUS, and the listener stays
//!   open as before (see [`controller_authorizer`]). The ACLs
//!   are the controller's own metadata image's, so `super.users` is what lets the nodes in
//!   before any ACL exists, as in Kafka. The principal is fixed for the connection: a super
//!   user is decided once; anyone else is one lookup in the authorizer's per-ACL-set index.
//!
//! Fjord difference: Kafka's brokers wrap forwarded admin requests (CreateTopics, CreateAcls,
//! ...) in an Envelope, which needs CLUSTER_ACTION, and the controller then checks the
//! client's own principal. Fjord's brokers authorize the client themselves and forward the bare
//! request, so on the controller listener every controller API needs CLUSTER_ACTION: a client
//! with only CREATE on the cluster cannot bypass the brokers (`--bootstrap-controller` admin
//! requests need CLUSTER_ACTION or a super user).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fjord_broker::security::authorizer::{AclMap, Authorizer, Caller, CLUSTER_NAME};
use fjord_broker::security::{KafkaPrincipal, SecurityProtocol};
use fjord_broker::BrokerConfig;
use fjord_metadata::security::{AclOperation, AclResourceType};
use fjord_protocol::ApiKey;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::warn;

use crate::node_client::PeerEndpoint;
use crate::test_hooks::{PeerAddresses, PeerListener};
use crate::tls::ListenerTls;

/// The controller listener's TLS, both sides, loaded once at start.
#[derive(Clone, Default)]
pub struct ControllerTls {
    /// The server side, on a voter that binds an SSL controller listener.
    pub server: Option<Arc<ListenerTls>>,
    /// The client side, on a node that dials an SSL controller listener of another node.
    pub client: Option<Arc<ClientConfig>>,
}

impl ControllerTls {
    /// Loads what this node needs: nothing for PLAINTEXT; for SSL the server side when it
    /// binds `controller.listen` and the client side when it dials another voter. Any error
    /// (a missing keystore or truststore, a bad file, a bad `ssl.*` value) stops the start and
    /// names the setting.
    pub fn load(config: &BrokerConfig) -> anyhow::Result<Self> {
        let name = &config.controller_listener_name;
        let protocol = config.controller_security_protocol;
        // The config refuses SASL on the controller listener.
        assert!(
            !protocol.uses_sasl(),
            "controller listener {name} with {protocol} passed the config check"
        );
        if protocol != SecurityProtocol::Ssl {
            return Ok(Self::default());
        }
        let context = || {
            format!("controller listener {name} (SSL: controller.listener.names, listener.security.protocol.map)")
        };
        let server = if config.process_roles.controller && config.controller_listen.is_some() {
            Some(Arc::new(
                ListenerTls::load(config, name).with_context(context)?,
            ))
        } else {
            None
        };
        let dials_others = config
            .controller_quorum_voters
            .iter()
            .any(|(id, address)| *id != config.node_id && address.is_some());
        let client = if dials_others {
            Some(crate::tls::client_config(config, name).with_context(context)?)
        } else {
            None
        };
        Ok(Self { server, client })
    }
}

/// The authorizer of the controller listener: set when `authorizer.class.name` is and the
/// listener authenticates (SSL). A PLAINTEXT controller listener has only ANONYMOUS callers,
/// so authorizing them could only refuse every node (Kafka would, unless `User:ANONYMOUS` is
/// a super user); Fjord keeps such a listener open as it always was (a trusted network) and
/// says so at start.
pub fn controller_authorizer(config: &BrokerConfig) -> Option<Arc<Authorizer>> {
    if !config.authorizer.enabled {
        return None;
    }
    if config.controller_security_protocol == SecurityProtocol::Plaintext {
        if config.controller_listen.is_some() {
            warn!(listener = %config.controller_listener_name,
                "the authorizer is on but the controller listener is PLAINTEXT: its callers are not authenticated and not authorized; map it to SSL with ssl.client.auth=required to secure it");
        }
        return None;
    }
    Some(Arc::new(Authorizer::new(config.authorizer.clone())))
}

/// Where to dial the voters' controller listeners (`skip` excluded): the address
/// `controller.quorum.voters` gives (or a test override of it) and, as TLS server name, the
/// host it names.
pub fn voter_endpoints(
    config: &BrokerConfig,
    peer_addresses: &PeerAddresses,
    skip: Option<i32>,
) -> Vec<PeerEndpoint> {
    config
        .controller_quorum_voters
        .iter()
        .filter(|(id, _)| Some(*id) != skip)
        .filter_map(|(id, address)| {
            let address = address.as_ref()?;
            Some(PeerEndpoint {
                node_id: *id,
                address: peer_addresses.resolve(PeerListener::Controller, *id, address),
                server_name: host_of(address),
            })
        })
        .collect()
}

/// The host of `HOST:PORT` (`[v6]:PORT` without the brackets).
fn host_of(address: &str) -> String {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

/// A connection to a controller listener: TCP or TLS over it.
pub trait ControllerStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> ControllerStream for T {}

/// Dials a controller listener: TCP within `timeout`, then, with `tls`, the handshake within
/// `timeout` too (the server is checked against the truststore, and against `server_name`
/// when `ssl.endpoint.identification.algorithm=https`).
pub async fn dial(
    address: &str,
    server_name: &str,
    tls: Option<&Arc<ClientConfig>>,
    timeout: Duration,
) -> Result<Box<dyn ControllerStream>, String> {
    let stream = crate::tls::connect_tcp(address, timeout).await?;
    match tls {
        None => Ok(Box::new(stream)),
        Some(config) => crate::tls::connect_tls(stream, config, server_name, timeout)
            .await
            .map(|stream| Box::new(stream) as Box<dyn ControllerStream>)
            .map_err(|error| format!("{address}: {error}")),
    }
}

/// The operation on the Cluster resource a frame of `api_key` needs on the controller
/// listener (Kafka `ControllerApis`), `None` for ApiVersions. Raft frames (Fjord key 10000),
/// observers' FetchMetadata (10001, 10002) and every controller API need CLUSTER_ACTION (see
/// the module docs), DescribeQuorum DESCRIBE.
pub fn required_operation(api_key: i16) -> Option<AclOperation> {
    if api_key == ApiKey::ApiVersions as i16 {
        None
    } else if api_key == ApiKey::DescribeQuorum as i16 {
        Some(AclOperation::Describe)
    } else {
        Some(AclOperation::ClusterAction)
    }
}

/// Who a controller-listener connection is, and what it may do.
pub struct ControllerAccess {
    principal: KafkaPrincipal,
    caller: Caller,
    authorizer: Option<Arc<Authorizer>>,
    /// Decided once: a super user passes every check without looking at the ACLs.
    super_user: bool,
}

impl ControllerAccess {
    /// The access of a connection from `peer_ip` authenticated as `principal` (ANONYMOUS on
    /// PLAINTEXT or without a client certificate); `authorizer` `None`: everything allowed.
    pub fn new(
        principal: KafkaPrincipal,
        peer_ip: Option<IpAddr>,
        authorizer: Option<Arc<Authorizer>>,
    ) -> Self {
        let super_user = authorizer
            .as_ref()
            .is_some_and(|authorizer| authorizer.is_super_user(&principal));
        Self {
            caller: Caller::new(&principal, peer_ip),
            principal,
            authorizer,
            super_user,
        }
    }

    pub fn principal(&self) -> &KafkaPrincipal {
        &self.principal
    }

    /// Whether the connection may perform `operation` on the Cluster resource under the ACLs
    /// `acls` returns (asked only when a decision is needed; the authorizer keeps its index
    /// per ACL set, so a decision is one lookup).
    pub fn allows(&self, operation: AclOperation, acls: impl FnOnce() -> Arc<AclMap>) -> bool {
        let Some(authorizer) = &self.authorizer else {
            return true;
        };
        if self.super_user {
            return true;
        }
        authorizer.authorize(
            &authorizer.index(&acls()),
            &self.caller,
            AclResourceType::Cluster,
            CLUSTER_NAME,
            operation,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use fjord_broker::security::authorizer::AuthorizerConfig;
    use fjord_metadata::security::{AclPatternType, AclPermissionType, StandardAcl};
    use uuid::Uuid;

    use super::*;

    fn authorizer(super_users: &str) -> Option<Arc<Authorizer>> {
        let config = AuthorizerConfig::parse("fjord", super_users, false).unwrap();
        Some(Arc::new(Authorizer::new(config)))
    }

    fn cluster_acl(principal: &str, operation: AclOperation) -> StandardAcl {
        StandardAcl {
            resource_type: AclResourceType::Cluster,
            resource_name: CLUSTER_NAME.to_string(),
            pattern_type: AclPatternType::Literal,
            principal: principal.to_string(),
            host: "*".to_string(),
            operation,
            permission_type: AclPermissionType::Allow,
        }
    }

    fn acls(entries: Vec<StandardAcl>) -> Arc<AclMap> {
        Arc::new(
            entries
                .into_iter()
                .map(|acl| (Uuid::new_v4(), acl))
                .collect::<BTreeMap<_, _>>(),
        )
    }

    fn ip() -> Option<IpAddr> {
        Some(IpAddr::from([127, 0, 0, 1]))
    }

    #[test]
    fn every_frame_but_api_versions_needs_a_cluster_operation() {
        assert_eq!(required_operation(ApiKey::ApiVersions as i16), None);
        assert_eq!(
            required_operation(ApiKey::DescribeQuorum as i16),
            Some(AclOperation::Describe)
        );
        for key in [
            crate::raft_transport::FJORD_RAFT_API_KEY,
            fjord_broker::metadata_fetch::FETCH_METADATA_API_KEY,
            fjord_broker::metadata_fetch::FETCH_METADATA_SNAPSHOT_API_KEY,
        ] {
            assert_eq!(required_operation(key), Some(AclOperation::ClusterAction));
        }
        for key in fjord_broker::controller_wire::CONTROLLER_APIS {
            assert_eq!(
                required_operation(key as i16),
                Some(AclOperation::ClusterAction),
                "{key:?}"
            );
        }
    }

    #[test]
    fn without_an_authorizer_everything_passes() {
        let access = ControllerAccess::new(KafkaPrincipal::anonymous(), ip(), None);
        assert!(access.allows(AclOperation::ClusterAction, || panic!("no ACL lookup")));
        assert!(access.allows(AclOperation::Describe, || panic!("no ACL lookup")));
    }

    #[test]
    fn a_super_user_is_decided_once_without_acls() {
        let access = ControllerAccess::new(
            KafkaPrincipal::user("fjord-node"),
            ip(),
            authorizer("User:fjord-node"),
        );
        assert!(access.allows(AclOperation::ClusterAction, || panic!("no ACL lookup")));
        assert!(access.allows(AclOperation::Describe, || panic!("no ACL lookup")));
    }

    #[test]
    fn others_need_the_cluster_acl_and_follow_acl_changes() {
        let authorizer = authorizer("User:fjord-node");
        let intruder =
            ControllerAccess::new(KafkaPrincipal::user("intruder"), ip(), authorizer.clone());
        let anonymous =
            ControllerAccess::new(KafkaPrincipal::anonymous(), ip(), authorizer.clone());
        let none = acls(Vec::new());
        assert!(!intruder.allows(AclOperation::ClusterAction, || none.clone()));
        assert!(!intruder.allows(AclOperation::Describe, || none.clone()));
        assert!(!anonymous.allows(AclOperation::ClusterAction, || none.clone()));
        // DESCRIBE granted: DescribeQuorum passes, Raft and controller APIs still do not.
        let describe = acls(vec![cluster_acl("User:intruder", AclOperation::Describe)]);
        assert!(intruder.allows(AclOperation::Describe, || describe.clone()));
        assert!(!intruder.allows(AclOperation::ClusterAction, || describe.clone()));
        // A new ACL set is looked at again: CLUSTER_ACTION granted, then taken away.
        let action = acls(vec![cluster_acl(
            "User:intruder",
            AclOperation::ClusterAction,
        )]);
        assert!(intruder.allows(AclOperation::ClusterAction, || action.clone()));
        assert!(!anonymous.allows(AclOperation::ClusterAction, || action.clone()));
        assert!(!intruder.allows(AclOperation::ClusterAction, || none.clone()));
        // Same set, same answer.
        assert!(intruder.allows(AclOperation::ClusterAction, || action.clone()));
        assert!(intruder.allows(AclOperation::ClusterAction, || action.clone()));
    }

    #[test]
    fn only_an_ssl_controller_listener_is_authorized() {
        let config = |pairs: &[(&str, &str)]| {
            let mut settings = BTreeMap::from([
                (
                    "controller.listen".to_string(),
                    "127.0.0.1:19391".to_string(),
                ),
                (
                    "controller.quorum.voters".to_string(),
                    "1@127.0.0.1:19391".to_string(),
                ),
            ]);
            for (key, value) in pairs {
                settings.insert(key.to_string(), value.to_string());
            }
            BrokerConfig::from_settings(&settings).unwrap()
        };
        let on = ("authorizer.class.name", "fjord");
        let ssl = ("listener.security.protocol.map", "CONTROLLER:SSL");
        assert!(controller_authorizer(&config(&[])).is_none());
        assert!(controller_authorizer(&config(&[ssl])).is_none());
        // PLAINTEXT: every caller is ANONYMOUS; the listener stays open as before.
        assert!(controller_authorizer(&config(&[on])).is_none());
        let authorizer = controller_authorizer(&config(&[on, ssl])).unwrap();
        assert!(authorizer.config().enabled);
    }

    #[test]
    fn voter_endpoints_dial_the_override_and_check_the_configured_host() {
        let config = BrokerConfig::from_settings(&BTreeMap::from([
            ("node.id".to_string(), "1".to_string()),
            (
                "controller.listen".to_string(),
                "127.0.0.1:19391".to_string(),
            ),
            (
                "controller.quorum.voters".to_string(),
                "1@127.0.0.1:19391,2@node2.example:19392,3@[::1]:19393".to_string(),
            ),
        ]))
        .unwrap();
        let overrides = PeerAddresses::parse("controller:2@127.0.0.1:29392").unwrap();
        let endpoints = voter_endpoints(&config, &overrides, Some(1));
        assert_eq!(
            endpoints,
            vec![
                PeerEndpoint {
                    node_id: 2,
                    address: "127.0.0.1:29392".into(),
                    server_name: "node2.example".into()
                },
                PeerEndpoint {
                    node_id: 3,
                    address: "[::1]:19393".into(),
                    server_name: "::1".into()
                },
            ]
        );
    }

    #[test]
    fn plaintext_loads_nothing_and_ssl_needs_its_files() {
        let mut settings = BTreeMap::from([
            ("node.id".to_string(), "1".to_string()),
            (
                "controller.listen".to_string(),
                "127.0.0.1:19391".to_string(),
            ),
            (
                "controller.quorum.voters".to_string(),
                "1@127.0.0.1:19391,2@127.0.0.1:19392".to_string(),
            ),
        ]);
        let plain = ControllerTls::load(&BrokerConfig::from_settings(&settings).unwrap()).unwrap();
        assert!(plain.server.is_none() && plain.client.is_none());
        settings.insert(
            "listener.security.protocol.map".to_string(),
            "CONTROLLER:SSL".to_string(),
        );
        let error = ControllerTls::load(&BrokerConfig::from_settings(&settings).unwrap())
            .err()
            .unwrap();
        let text = format!("{error:#}");
        assert!(text.contains("controller listener CONTROLLER"), "{text}");
        assert!(text.contains("ssl.keystore.location"), "{text}");
        settings.insert(
            "listener.name.controller.ssl.keystore.location".to_string(),
            "/nonexistent/node.pem".to_string(),
        );
        let error = ControllerTls::load(&BrokerConfig::from_settings(&settings).unwrap())
            .err()
            .unwrap();
        let text = format!("{error:#}");
        assert!(
            text.contains("listener.name.controller.ssl.keystore.location"),
            "{text}"
        );
    }
}
