"""The part of Railway's public GraphQL schema (v2) the fake serves, and what a token sees.

A project token sees one environment of one project; an account token sees everything.
A project token may read whether a service auto-deploys but not change it ("Bad Access",
as Railway answers it): `serviceInstanceAutoDeployUpdate` needs an account or workspace
token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graphql import GraphQLError, OperationDefinitionNode, build_schema

SCHEMA = build_schema(
    """
    scalar DateTime
    "Railway's DeploymentMeta: free-form JSON."
    scalar DeploymentMeta

    enum DeploymentStatus {
      BUILDING CRASHED DEPLOYING FAILED INITIALIZING NEEDS_APPROVAL QUEUED REMOVED
      REMOVING SKIPPED SLEEPING SUCCESS WAITING
    }

    input DeploymentStatusInput {
      in: [DeploymentStatus!]
      notIn: [DeploymentStatus!]
      successfulOnly: Boolean
    }

    input DeploymentListInput {
      projectId: String
      environmentId: String
      serviceId: String
      includeDeleted: Boolean
      status: DeploymentStatusInput
    }

    type Deployment {
      id: ID!
      status: DeploymentStatus!
      createdAt: DateTime!
      updatedAt: DateTime!
      canRollback: Boolean!
      canRedeploy: Boolean!
      meta: DeploymentMeta
      staticUrl: String
      url: String
      projectId: String!
      serviceId: String
      environmentId: String!
    }

    type PageInfo {
      hasNextPage: Boolean!
      hasPreviousPage: Boolean!
      startCursor: String
      endCursor: String
    }

    type QueryDeploymentsConnectionEdge {
      cursor: String!
      node: Deployment!
    }

    type QueryDeploymentsConnection {
      edges: [QueryDeploymentsConnectionEdge!]!
      pageInfo: PageInfo!
    }

    "Whether pushes to the connected branch deploy the service in this environment."
    type ServiceInstanceAutoDeployStatus {
      enabled: Boolean!
      canEnable: Boolean!
      reason: String
    }

    input ServiceInstanceAutoDeployUpdateInput {
      projectId: String!
      environmentId: String!
      serviceId: String!
      enabled: Boolean!
    }

    type Query {
      deployments(
        input: DeploymentListInput!, first: Int, after: String, last: Int, before: String
      ): QueryDeploymentsConnection!
      deployment(id: String!): Deployment!
      serviceInstanceAutoDeployStatus(
        projectId: String!, environmentId: String!, serviceId: String!
      ): ServiceInstanceAutoDeployStatus!
    }

    type Mutation {
      deploymentRollback(id: String!): Boolean!
      serviceInstanceAutoDeployUpdate(
        input: ServiceInstanceAutoDeployUpdateInput!
      ): ServiceInstanceAutoDeployStatus!
    }
    """
)


@dataclass
class Scope:
    """What a token may see: everything (account) or one environment of one project."""

    project_id: str | None = None
    environment_id: str | None = None

    def allows(self, project_id: str | None, environment_id: str | None) -> bool:
        """Say whether the token may see this environment of this project."""
        if self.project_id is None:
            return True
        return project_id == self.project_id and environment_id == self.environment_id


@dataclass
class Context:
    """What a resolver knows of the request: the scope of its token, None without a valid one."""

    scope: Scope | None


def authorize(context: Context, project_id: str | None, environment_id: str | None) -> None:
    """Raise Railway's "Not Authorized" unless the token may see this environment."""
    if context.scope is None or not context.scope.allows(project_id, environment_id):
        raise GraphQLError("Not Authorized")


def root_fields(document: Any, operation_name: str | None) -> tuple[str, ...]:
    """Return the root field names of the operation a request runs."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    chosen = next(
        (o for o in operations if operation_name and o.name and o.name.value == operation_name),
        operations[0] if operations else None,
    )
    if chosen is None:
        return ()
    return tuple(s.name.value for s in chosen.selection_set.selections if hasattr(s, "name"))
