//! CreateAcls (key 30), v1-v3: forwarded to the active controller (Kafka's KRaft
//! `AclControlManager`), which validates each creation and writes an
//! `AccessControlEntryRecord` per new ACL; answered once this broker's image holds them. One
//! result per creation, in request order; at most
//! [`fjord_controller::ACL_REQUEST_ITEMS_MAX`] creations are accepted per request.
//!
//! Unlike Kafka, which answers SECURITY_DISABLED without an authorizer, ACLs can be managed
//! while `authorizer.class.name` is empty: they are stored and take effect once the
//! authorizer is turned on.

use fjord_protocol::kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse};
use fjord_protocol::VersionRange;

use crate::controller_wire::security::{
    create_acls_error, create_acls_from_wire, create_acls_reply_to_wire, str_bytes,
};
use crate::forwarding::CONTROLLER_REQUEST_TIMEOUT_MS;
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 3 };

pub async fn handle(broker: &Broker, request: &CreateAclsRequest) -> CreateAclsResponse {
    let forwarded = create_acls_from_wire(request);
    match broker
        .create_acls_via_controller(forwarded, CONTROLLER_REQUEST_TIMEOUT_MS)
        .await
    {
        Ok(reply) => create_acls_reply_to_wire(&reply),
        Err(error) => create_acls_error(
            request,
            error.code.code(),
            error.message.as_deref().map(str_bytes),
        ),
    }
}
