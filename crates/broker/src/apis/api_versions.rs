//! ApiVersions (key 18): which APIs and versions this broker implements.
//!
//! Kafka's rule for a version the broker does not know (KIP-511): answer with a v0 response
//! carrying UNSUPPORTED_VERSION and the supported ranges, so the client can pick a version.
//!
//! From v3 the response carries the feature flags (KIP-584, tagged fields): Fjord supports
//! `transaction.version` 0-2 and has finalized level 2 (KIP-890: clients use EndTxn v5 and
//! Produce v12 with implicit partition adds). Kafka 4.x answers the same way once the feature
//! is finalized; the epoch only has to be non-negative and stable on a single node.

use fjord_protocol::kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use fjord_protocol::kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ResponseError, VersionRange};

use super::SUPPORTED_APIS;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 4 };

/// First version with the feature fields.
const FEATURES_VERSION: i16 = 3;
/// KIP-890's feature and the levels Fjord supports and has finalized.
pub const TRANSACTION_VERSION_FEATURE: &str = "transaction.version";
pub const TRANSACTION_VERSION_SUPPORTED: (i16, i16) = (0, 2);
pub const TRANSACTION_VERSION_FINALIZED: i16 = 2;
/// The finalized features never change on a running single node.
pub const FINALIZED_FEATURES_EPOCH: i64 = 1;

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|(key, versions)| {
            ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(versions.min)
                .with_max_version(versions.max)
        })
        .collect()
}

/// Kafka's pattern for client software names and versions (KIP-511):
/// `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?`.
fn is_valid_software_field(value: &str) -> bool {
    let bytes = value.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'.')
}

pub fn handle(api_version: i16, request: &ApiVersionsRequest) -> ApiVersionsResponse {
    let mut response = ApiVersionsResponse::default()
        .with_api_keys(api_keys())
        .with_finalized_features_epoch(-1);
    if api_version >= FEATURES_VERSION {
        response = response
            .with_supported_features(vec![SupportedFeatureKey::default()
                .with_name(StrBytes::from_static_str(TRANSACTION_VERSION_FEATURE))
                .with_min_version(TRANSACTION_VERSION_SUPPORTED.0)
                .with_max_version(TRANSACTION_VERSION_SUPPORTED.1)])
            .with_finalized_features_epoch(FINALIZED_FEATURES_EPOCH)
            .with_finalized_features(vec![FinalizedFeatureKey::default()
                .with_name(StrBytes::from_static_str(TRANSACTION_VERSION_FEATURE))
                .with_min_version_level(TRANSACTION_VERSION_FINALIZED)
                .with_max_version_level(TRANSACTION_VERSION_FINALIZED)]);
    }
    if api_version >= 3
        && !(is_valid_software_field(&request.client_software_name)
            && is_valid_software_field(&request.client_software_version))
    {
        return response.with_error_code(ResponseError::InvalidRequest.code());
    }
    response
}

/// The v0 answer to an ApiVersions request with a version this broker does not implement.
pub fn unsupported_version_response() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_keys())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn software_names_follow_kip_511() {
        assert!(is_valid_software_field("confluent-kafka-python"));
        assert!(is_valid_software_field("2.16.1-rdkafka-2.16.0"));
        assert!(!is_valid_software_field(""));
        assert!(!is_valid_software_field("-bad"));
        assert!(!is_valid_software_field("has space"));
    }

    #[test]
    fn v3_and_later_carry_transaction_version_2() {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("test"))
            .with_client_software_version(StrBytes::from_static_str("1"));
        let response = handle(3, &request);
        assert_eq!(response.finalized_features_epoch, FINALIZED_FEATURES_EPOCH);
        assert_eq!(response.finalized_features[0].max_version_level, 2);
        assert_eq!(response.supported_features[0].max_version, 2);
        let response = handle(2, &request);
        assert!(response.finalized_features.is_empty());
        assert_eq!(response.finalized_features_epoch, -1);
    }
}
