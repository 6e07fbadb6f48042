//! Names of the model's enums as the OpenAPI document lists them. The model
//! (`medify_actors::model`) knows nothing of OpenAPI; these mirrors give client generators
//! a closed set of values, and the tests below keep them equal to the model's.

use serde::Serialize;
use utoipa::ToSchema;

/// Where an order is in its life.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = OrderStatus)]
pub enum OrderStatusName {
    Confirmed,
    AwaitingPrescription,
    AwaitingPayment,
    Dispatching,
    Assigned,
    PickedUp,
    Delivered,
    Cancelled,
    Failed,
}

/// How an order is paid.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = PaymentMethod)]
pub enum PaymentMethodName {
    Cod,
    Online,
}

/// Where an order's money is.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = PaymentStatus)]
pub enum PaymentStatusName {
    Pending,
    Paid,
    Failed,
    RefundPending,
    Refunded,
}

/// Why a cancelled order was cancelled.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = CancelReason)]
pub enum CancelReasonName {
    Customer,
    Admin,
    PrescriptionRejected,
    PaymentFailed,
}

/// What a rider is doing, as `GET /riders` reports it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = RiderState)]
pub enum RiderStateName {
    Offline,
    Free,
    Offered,
    OnDelivery,
}

/// The states an online rider can be listed by (`GET /riders?state=`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = LiveRiderState)]
pub enum LiveRiderStateName {
    Free,
    Offered,
    OnDelivery,
}

#[cfg(test)]
mod tests {
    use super::*;
    use medify_actors::model::{
        CancelReason, OrderStatus, PaymentMethod, PaymentStatus, RiderState,
    };
    use utoipa::PartialSchema;

    /// The enum values a schema lists.
    fn listed<T: PartialSchema>() -> Vec<String> {
        let json = serde_json::to_value(T::schema()).expect("schema");
        json["enum"]
            .as_array()
            .expect("an enum")
            .iter()
            .map(|v| v.as_str().expect("a name").to_owned())
            .collect()
    }

    #[test]
    fn the_documented_names_are_the_models() {
        let names = |all: Vec<&str>| all.into_iter().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            listed::<OrderStatusName>(),
            names(OrderStatus::ALL.iter().map(|s| s.as_str()).collect())
        );
        assert_eq!(
            listed::<PaymentMethodName>(),
            names(PaymentMethod::ALL.iter().map(|s| s.as_str()).collect())
        );
        assert_eq!(
            listed::<PaymentStatusName>(),
            names(PaymentStatus::ALL.iter().map(|s| s.as_str()).collect())
        );
        assert_eq!(
            listed::<CancelReasonName>(),
            names(CancelReason::ALL.iter().map(|s| s.as_str()).collect())
        );
        assert_eq!(
            listed::<RiderStateName>(),
            names(RiderState::ALL.iter().map(|s| s.as_str()).collect())
        );
        assert_eq!(
            listed::<LiveRiderStateName>(),
            names(
                RiderState::ALL
                    .iter()
                    .filter(|s| **s != RiderState::Offline)
                    .map(|s| s.as_str())
                    .collect()
            )
        );
    }
}
