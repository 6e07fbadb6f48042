//! `GET /api/v1/cluster` (admins): this node and every live node of the cluster.

use actix_web::{get, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::AuthUser;
use crate::cluster::membership::Node;
use crate::domain::Role;
use crate::error::{ApiError, Problem};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct ClusterView {
    /// The node that answered.
    pub node_id: String,
    /// Every node alive now (heard from within `MEDIFY_NODE_TTL_S`), by id; a node that is
    /// not in a cluster lists only itself.
    pub nodes: Vec<Node>,
    /// The node dispatching the first region (by cell index) as this node last read the
    /// leases; `null` while it changes hands or before any pharmacy exists. A node alone
    /// names itself. (v1.2 had one node dispatching; `regions` lists every region.)
    pub dispatch: Option<String>,
    /// Every region orders are dispatched in (the H3 cell of the matcher's shard, at
    /// `MATCHER_SHARD_RESOLUTION`) with the node that owns it, as this node last read the leases.
    /// Empty on a node that is not in a cluster.
    pub regions: Vec<RegionOwner>,
}

/// One region and its owner.
#[derive(Serialize, ToSchema)]
pub struct RegionOwner {
    /// The region's H3 cell, in hexadecimal.
    pub region: String,
    /// The node matching its orders and running their actors.
    pub node: String,
}

/// The live nodes.
#[utoipa::path(
    tag = "cluster",
    security(("bearer" = [])),
    responses(
        (status = 200, body = ClusterView),
        (status = 401, description = "`unauthorized`: no valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: the caller's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: Redis, which holds the membership, does not answer", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/cluster")]
pub async fn cluster(
    user: AuthUser,
    state: web::Data<AppState>,
) -> Result<web::Json<ClusterView>, ApiError> {
    user.require(&[Role::Admin])?;
    let nodes = state.cluster.nodes().await.map_err(|e| {
        tracing::warn!(error = %e, "cluster membership unreadable");
        ApiError::Unavailable("the cluster's membership cannot be read now".to_owned())
    })?;
    Ok(web::Json(ClusterView {
        node_id: state.cluster.node_id().to_owned(),
        nodes,
        dispatch: state.cluster.dispatch_holder(),
        regions: state
            .cluster
            .region_holders()
            .into_iter()
            .map(|(region, node)| RegionOwner { region, node })
            .collect(),
    }))
}
