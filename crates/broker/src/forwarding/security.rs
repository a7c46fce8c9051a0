//! CreateAcls, DeleteAcls, AlterUserScramCredentials and AlterClientQuotas through the
//! controller (issue 9; Kafka's KRaft brokers forward them the same way). Each waits, after
//! the controller's reply, until this broker's image shows every change the reply reports as
//! made, so a client that describes its change on this broker right after sees it (as for
//! CreateTopics). A change that does not reach the image in time is logged and answered
//! anyway: it is committed.

use std::collections::BTreeSet;

use fjord_controller::{
    AlterClientQuotasReply, AlterClientQuotasRequest, AlterUserScramCredentialsReply,
    AlterUserScramCredentialsRequest, ApiError, ControllerReply, ControllerRequest,
    CreateAclsReply, CreateAclsRequest, DeleteAclsReply, DeleteAclsRequest,
};
use fjord_metadata::security::{ClientQuotaEntity, ScramCredential, ScramMechanism, StandardAcl};
use fjord_metadata::MetadataImage;

use super::unexpected;
use crate::Broker;

/// What the image must show once a change is visible.
enum Expect {
    AclPresent(StandardAcl),
    AclAbsent(StandardAcl),
    Credential(String, ScramMechanism, Option<ScramCredential>),
    Quota(ClientQuotaEntity, String, Option<f64>),
}

impl Expect {
    fn holds(&self, image: &MetadataImage, acls: &BTreeSet<&StandardAcl>) -> bool {
        match self {
            Expect::AclPresent(acl) => acls.contains(acl),
            Expect::AclAbsent(acl) => !acls.contains(acl),
            Expect::Credential(user, mechanism, credential) => {
                image.scram_credentials.get(&(user.clone(), *mechanism)) == credential.as_ref()
            }
            Expect::Quota(entity, key, value) => {
                image.client_quotas.get(entity).and_then(|v| v.get(key)) == value.as_ref()
            }
        }
    }
}

impl Broker {
    async fn wait_until_visible(&self, api: &'static str, expects: Vec<Expect>, timeout_ms: u64) {
        if expects.is_empty() {
            return;
        }
        let visible = self
            .wait_for_metadata(
                |image| {
                    let acls: BTreeSet<&StandardAcl> = image.acls.values().collect();
                    expects.iter().all(|e| e.holds(image, &acls))
                },
                timeout_ms,
            )
            .await;
        if !visible {
            tracing::warn!(
                api,
                "a committed change did not reach this broker's image in time"
            );
        }
    }

    /// CreateAcls through the controller; waits for the created ACLs in this broker's image.
    pub async fn create_acls_via_controller(
        &self,
        request: CreateAclsRequest,
        timeout_ms: u64,
    ) -> Result<CreateAclsReply, ApiError> {
        let creations = request.creations.clone();
        let reply = match self
            .send_to_controller(ControllerRequest::CreateAcls(request), timeout_ms)
            .await?
        {
            ControllerReply::CreateAcls(reply) => reply,
            other => return Err(unexpected(&other)),
        };
        let expects = creations
            .iter()
            .zip(&reply.results)
            .filter(|(_, e)| e.is_ok())
            .filter_map(|(c, _)| fjord_controller::controller::validate_new_acl(c).ok())
            .map(Expect::AclPresent)
            .collect();
        self.wait_until_visible("CreateAcls", expects, timeout_ms)
            .await;
        Ok(reply)
    }

    /// DeleteAcls through the controller; waits until the deleted ACLs are gone here.
    pub async fn delete_acls_via_controller(
        &self,
        request: DeleteAclsRequest,
        timeout_ms: u64,
    ) -> Result<DeleteAclsReply, ApiError> {
        let reply = match self
            .send_to_controller(ControllerRequest::DeleteAcls(request), timeout_ms)
            .await?
        {
            ControllerReply::DeleteAcls(reply) => reply,
            other => return Err(unexpected(&other)),
        };
        let expects = reply
            .results
            .iter()
            .filter(|r| r.error.is_ok())
            .flat_map(|r| r.matching_acls.iter().cloned())
            .map(Expect::AclAbsent)
            .collect();
        self.wait_until_visible("DeleteAcls", expects, timeout_ms)
            .await;
        Ok(reply)
    }

    /// AlterUserScramCredentials through the controller; waits for the new or deleted
    /// credentials in this broker's image.
    pub async fn alter_user_scram_credentials_via_controller(
        &self,
        request: AlterUserScramCredentialsRequest,
        timeout_ms: u64,
    ) -> Result<AlterUserScramCredentialsReply, ApiError> {
        let reply = match self
            .send_to_controller(
                ControllerRequest::AlterUserScramCredentials(request.clone()),
                timeout_ms,
            )
            .await?
        {
            ControllerReply::AlterUserScramCredentials(reply) => reply,
            other => return Err(unexpected(&other)),
        };
        let succeeded: BTreeSet<&str> = reply
            .results
            .iter()
            .filter(|r| r.error.is_ok())
            .map(|r| r.user.as_str())
            .collect();
        let mut expects = Vec::new();
        for d in &request.deletions {
            if let (true, Some(m)) = (
                succeeded.contains(d.name.as_str()),
                ScramMechanism::from_code(d.mechanism),
            ) {
                expects.push(Expect::Credential(d.name.clone(), m, None));
            }
        }
        for u in &request.upsertions {
            if let (true, Some(m)) = (
                succeeded.contains(u.name.as_str()),
                ScramMechanism::from_code(u.mechanism),
            ) {
                let credential = ScramCredential::from_salted_password(
                    m,
                    &u.salt,
                    &u.salted_password,
                    u.iterations,
                );
                expects.push(Expect::Credential(u.name.clone(), m, Some(credential)));
            }
        }
        self.wait_until_visible("AlterUserScramCredentials", expects, timeout_ms)
            .await;
        Ok(reply)
    }

    /// AlterClientQuotas through the controller; unless `validate_only`, waits for the new
    /// values in this broker's image.
    pub async fn alter_client_quotas_via_controller(
        &self,
        request: AlterClientQuotasRequest,
        timeout_ms: u64,
    ) -> Result<AlterClientQuotasReply, ApiError> {
        let reply = match self
            .send_to_controller(
                ControllerRequest::AlterClientQuotas(request.clone()),
                timeout_ms,
            )
            .await?
        {
            ControllerReply::AlterClientQuotas(reply) => reply,
            other => return Err(unexpected(&other)),
        };
        let mut expects = Vec::new();
        if !request.validate_only {
            for (entry, result) in request.entries.iter().zip(&reply.results) {
                if !result.error.is_ok() {
                    continue;
                }
                let entity: ClientQuotaEntity = entry.entity.iter().cloned().collect();
                for op in &entry.ops {
                    let value = (!op.remove).then_some(op.value);
                    expects.push(Expect::Quota(entity.clone(), op.key.clone(), value));
                }
            }
        }
        self.wait_until_visible("AlterClientQuotas", expects, timeout_ms)
            .await;
        Ok(reply)
    }
}
