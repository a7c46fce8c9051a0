//! DescribeCluster (key 60): brokers (from the metadata image, with racks; v2
//! `IncludeFencedBrokers` adds fenced ones), controller and cluster id for admin clients.

use fjord_protocol::kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_protocol::{ResponseError, VersionRange};

use super::AUTHORIZED_OPERATIONS_OMITTED;
use crate::metadata_view::ImageView;
use crate::Broker;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

/// Endpoint types (KIP-919): 1 = brokers, 2 = controllers.
const ENDPOINT_TYPE_BROKERS: i8 = 1;

/// The brokers' endpoints on `listener_name`, the listener the request came in on.
pub fn handle(
    broker: &Broker,
    listener_name: &str,
    request: &DescribeClusterRequest,
) -> DescribeClusterResponse {
    let image = broker.image();
    let view = ImageView::new(&image, listener_name);
    let response = DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(broker.cluster_id()))
        .with_controller_id(BrokerId(super::metadata::controller_id(&view)))
        .with_endpoint_type(request.endpoint_type)
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
    if request.endpoint_type != ENDPOINT_TYPE_BROKERS {
        // This node runs no separate controller listener to describe.
        return response
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(Some(StrBytes::from_static_str(
                "Only the broker endpoint type is supported",
            )));
    }
    response.with_brokers(view.describe_cluster_brokers(request.include_fenced_brokers))
}
