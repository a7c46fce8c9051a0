//! AlterClientQuotas (key 49), v0-v1: forwarded to the active controller (Kafka's
//! `ClientQuotaControlManager`: entities `user`, `client-id`, both, or `ip`; keys per entity
//! kind; values > 0; removals; `validate_only`), which writes a `ClientQuotaRecord` per
//! changed key; answered once this broker's image shows the new values. One result per entry.

use fjord_protocol::kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse,
};
use fjord_protocol::VersionRange;

use crate::controller_wire::security::{
    alter_quotas_error, alter_quotas_from_wire, alter_quotas_reply_to_wire, str_bytes,
};
use crate::forwarding::CONTROLLER_REQUEST_TIMEOUT_MS;
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 1 };

pub async fn handle(
    broker: &Broker,
    request: &AlterClientQuotasRequest,
) -> AlterClientQuotasResponse {
    let forwarded = alter_quotas_from_wire(request);
    match broker
        .alter_client_quotas_via_controller(forwarded, CONTROLLER_REQUEST_TIMEOUT_MS)
        .await
    {
        Ok(reply) => alter_quotas_reply_to_wire(&reply),
        Err(error) => alter_quotas_error(
            request,
            error.code.code(),
            error.message.as_deref().map(str_bytes),
        ),
    }
}
