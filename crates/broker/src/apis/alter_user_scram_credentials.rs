//! AlterUserScramCredentials (key 51), v0: forwarded to the active controller (Kafka's
//! `ScramControlManager`): upsertions carry the client's salt and salted password, from which
//! the controller derives the stored and server keys (the password never reaches the
//! broker); deletions name a user and mechanism. One result per user named; answered once
//! this broker's image shows the changes.

use fjord_protocol::kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
};
use fjord_protocol::VersionRange;

use crate::controller_wire::security::{
    alter_scram_error, alter_scram_from_wire, alter_scram_reply_to_wire, str_bytes,
};
use crate::forwarding::CONTROLLER_REQUEST_TIMEOUT_MS;
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 0 };

pub async fn handle(
    broker: &Broker,
    request: &AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let forwarded = alter_scram_from_wire(request);
    match broker
        .alter_user_scram_credentials_via_controller(forwarded, CONTROLLER_REQUEST_TIMEOUT_MS)
        .await
    {
        Ok(reply) => alter_scram_reply_to_wire(&reply),
        Err(error) => alter_scram_error(
            request,
            error.code.code(),
            error.message.as_deref().map(str_bytes),
        ),
    }
}
