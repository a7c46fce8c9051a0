//! DescribeUserScramCredentials (key 50), v0: the mechanisms and iteration counts of users'
//! SCRAM credentials in this broker's image (never salts or keys), Kafka's
//! `ScramImage.describe`: no users (null or empty) = every user with a credential; a named user
//! without any is RESOURCE_NOT_FOUND; a user named twice is DUPLICATE_RESOURCE (once).

use std::collections::BTreeMap;

use fjord_metadata::MetadataImage;
use fjord_protocol::kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use fjord_protocol::kafka_protocol::messages::{
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ResponseError, VersionRange};

use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 0 };

pub fn handle(
    broker: &Broker,
    request: &DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let users: Option<Vec<String>> = request
        .users
        .as_ref()
        .map(|users| users.iter().map(|u| u.name.to_string()).collect());
    describe(&broker.image(), users.as_deref())
}

/// The response for `users` (`None` or empty: all) on `image`.
pub fn describe(
    image: &MetadataImage,
    users: Option<&[String]>,
) -> DescribeUserScramCredentialsResponse {
    // User -> (named more than once), in order of first mention (sorted for "all").
    let mut order: Vec<&str> = Vec::new();
    let mut duplicate: BTreeMap<&str, bool> = BTreeMap::new();
    match users {
        Some(users) if !users.is_empty() => {
            for user in users {
                match duplicate.get_mut(user.as_str()) {
                    Some(d) => *d = true,
                    None => {
                        duplicate.insert(user, false);
                        order.push(user);
                    }
                }
            }
        }
        _ => {
            for (user, _) in image.scram_credentials.keys() {
                if duplicate.insert(user, false).is_none() {
                    order.push(user);
                }
            }
        }
    }
    let results = order
        .into_iter()
        .map(|user| {
            let result = DescribeUserScramCredentialsResult::default()
                .with_user(StrBytes::from_string(user.to_string()));
            if duplicate.get(user).copied().unwrap_or(false) {
                return result
                    .with_error_code(ResponseError::DuplicateResource.code())
                    .with_error_message(Some(StrBytes::from_string(format!(
                        "Cannot describe SCRAM credentials for the same user twice in a single request: {user}"
                    ))));
            }
            let infos: Vec<CredentialInfo> = image
                .scram_credentials
                .range((user.to_string(), fjord_metadata::security::ScramMechanism::ScramSha256)..)
                .take_while(|((u, _), _)| u == user)
                .map(|((_, mechanism), credential)| {
                    CredentialInfo::default()
                        .with_mechanism(mechanism.code())
                        .with_iterations(credential.iterations)
                })
                .collect();
            if infos.is_empty() {
                result
                    .with_error_code(ResponseError::ResourceNotFound.code())
                    .with_error_message(Some(StrBytes::from_string(format!(
                        "attemptToDescribeUserThatDoesNotExist: {user}"
                    ))))
            } else {
                result.with_error_code(0).with_credential_infos(infos)
            }
        })
        .collect();
    DescribeUserScramCredentialsResponse::default()
        .with_error_code(0)
        .with_results(results)
}
