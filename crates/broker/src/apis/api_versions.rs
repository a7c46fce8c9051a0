//! ApiVersions (key 18): which APIs and versions this broker implements.
//!
//! Kafka's rule for a version the broker does not know (KIP-511): answer with a v0 response
//! carrying UNSUPPORTED_VERSION and the supported ranges, so the client can pick a version.

use fjord_protocol::kafka_protocol::messages::api_versions_response::ApiVersion;
use fjord_protocol::kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use fjord_protocol::{ResponseError, VersionRange};

use super::SUPPORTED_APIS;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 4 };

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
    let response = ApiVersionsResponse::default()
        .with_api_keys(api_keys())
        .with_finalized_features_epoch(-1);
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
}
