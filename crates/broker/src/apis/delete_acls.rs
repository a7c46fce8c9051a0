//! DeleteAcls (key 31), v1-v3: forwarded to the active controller, which removes every ACL a
//! filter matches (Kafka `AclBindingFilter`: ANY fields, MATCH pattern type) with
//! `RemoveAccessControlEntryRecord`s; answered once this broker's image no longer has them.
//! One result per filter listing the ACLs it deleted.

use fjord_protocol::kafka_protocol::messages::{DeleteAclsRequest, DeleteAclsResponse};
use fjord_protocol::VersionRange;

use crate::controller_wire::security::{
    delete_acls_error, delete_acls_from_wire, delete_acls_reply_to_wire, str_bytes,
};
use crate::forwarding::CONTROLLER_REQUEST_TIMEOUT_MS;
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 3 };

pub async fn handle(broker: &Broker, request: &DeleteAclsRequest) -> DeleteAclsResponse {
    let forwarded = delete_acls_from_wire(request);
    match broker
        .delete_acls_via_controller(forwarded, CONTROLLER_REQUEST_TIMEOUT_MS)
        .await
    {
        Ok(reply) => delete_acls_reply_to_wire(&reply),
        Err(error) => delete_acls_error(
            request,
            error.code.code(),
            error.message.as_deref().map(str_bytes),
        ),
    }
}
