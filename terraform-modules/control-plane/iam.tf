# The role statehouse runs as. The actions come from worker-actions.json, the one list that
# tests/iam_actions.rs checks against every AWS call in the code; this file only says which
# resources and conditions each group of actions is limited to. Tenant resources are
# scoped by their deterministic names ({prefix}-{state}…, src/reconcile/names.rs) and by
# the tags statehouse puts on everything it makes (statehouse:managed-by=statehouse).

locals {
  worker_actions = { for sid, actions in jsondecode(file("${path.module}/worker-actions.json")).statements : sid => sort(keys(actions)) }

  prefix       = var.platform["STATEHOUSE_PREFIX"]
  region       = var.platform["AWS_REGION"]
  account_id   = var.platform["STATEHOUSE_ACCOUNT_ID"]
  cluster_name = var.platform["STATEHOUSE_CLUSTER"]
  listener_arn = var.platform["STATEHOUSE_LISTENER_ARN"]
  partition    = data.aws_partition.current.partition

  arn_prefix   = "arn:${local.partition}"
  cluster_arn  = "${local.arn_prefix}:ecs:${local.region}:${local.account_id}:cluster/${local.cluster_name}"
  task_roles   = "${local.arn_prefix}:iam::${local.account_id}:role/${local.prefix}-*-task"
  target_group = "${local.arn_prefix}:elasticloadbalancing:${local.region}:${local.account_id}:targetgroup/${local.prefix}-*/*"
  # Rules of the shared listener: listener/app/{lb}/{id}/{listener} → listener-rule/app/{lb}/{id}/{listener}/{rule}
  listener_rules = "${replace(local.listener_arn, ":listener/", ":listener-rule/")}/*"
  tenant_alarms  = "${local.arn_prefix}:cloudwatch:${local.region}:${local.account_id}:alarm:${local.prefix}-*"
  managed_tag    = "statehouse:managed-by"
}

data "aws_partition" "current" {}

data "aws_iam_policy_document" "worker" {
  #checkov:skip=CKV_AWS_356:AccountWideReads, EcsRegisterTaskDefinitions, EcsDeregisterTaskDefinitions, EcsTagOnCreate and EcsReadCellServices use "*" because those actions take no resource ARN (List*, Describe*, RegisterTaskDefinition) or because the inventory reads tags across the account; each is commented below and the mutating ones are limited by conditions.
  #checkov:skip=CKV_AWS_111:Every write is limited to the tenant name prefix or by the cluster, tag or create-action conditions; only ecs:DeregisterTaskDefinition has no resource-level control in AWS at all.
  #checkov:skip=CKV_AWS_109:Permissions management (iam:PutRolePolicy, iam:PassRole, …) is limited to {prefix}-*-task roles and the shared execution role.
  #checkov:skip=CKV_AWS_110:The worker must create tenant task roles with inline policies; it can do so only for {prefix}-*-task roles, tagged on creation, passed only to ECS tasks.

  # List*, Describe* and tag reads take no resource ARN or must see every resource in the
  # account (the inventory finds tenants' leftovers by tag, whatever their name). Read-only.
  statement {
    sid       = "AccountWideReads"
    actions   = local.worker_actions["AccountWideReads"]
    resources = ["*"]
  }

  statement {
    sid       = "S3TenantBuckets"
    actions   = local.worker_actions["S3TenantBuckets"]
    resources = ["${local.arn_prefix}:s3:::${local.prefix}-*"]
  }

  statement {
    sid       = "S3TenantObjects"
    actions   = local.worker_actions["S3TenantObjects"]
    resources = ["${local.arn_prefix}:s3:::${local.prefix}-*/*"]
  }

  statement {
    sid     = "DynamoDbTenantTables"
    actions = local.worker_actions["DynamoDbTenantTables"]
    resources = [
      "${local.arn_prefix}:dynamodb:${local.region}:${local.account_id}:table/${local.prefix}-*",
      "${local.arn_prefix}:dynamodb:${local.region}:${local.account_id}:table/${local.prefix}-*/backup/*",
    ]
  }

  statement {
    sid       = "IamCreateTenantRoles"
    actions   = local.worker_actions["IamCreateTenantRoles"]
    resources = [local.task_roles]

    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/${local.managed_tag}"
      values   = ["statehouse"]
    }
  }

  statement {
    sid       = "IamTenantRoles"
    actions   = local.worker_actions["IamTenantRoles"]
    resources = [local.task_roles]
  }

  statement {
    sid       = "IamPassTaskRoles"
    actions   = local.worker_actions["IamPassTaskRoles"]
    resources = [local.task_roles, var.platform["STATEHOUSE_EXECUTION_ROLE_ARN"]]

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }

  # Application Auto Scaling makes its ECS service-linked role on first use.
  statement {
    sid       = "IamAutoscalingServiceLinkedRole"
    actions   = local.worker_actions["IamAutoscalingServiceLinkedRole"]
    resources = ["${local.arn_prefix}:iam::${local.account_id}:role/aws-service-role/ecs.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_ECSService"]

    condition {
      test     = "StringEquals"
      variable = "iam:AWSServiceName"
      values   = ["ecs.application-autoscaling.amazonaws.com"]
    }
  }

  statement {
    sid       = "LogsTenantLogGroups"
    actions   = local.worker_actions["LogsTenantLogGroups"]
    resources = ["${local.arn_prefix}:logs:${local.region}:${local.account_id}:log-group:/${local.prefix}/*"]
  }

  # RegisterTaskDefinition takes no resource ARN; only definitions tagged as statehouse's.
  statement {
    sid       = "EcsRegisterTaskDefinitions"
    actions   = local.worker_actions["EcsRegisterTaskDefinitions"]
    resources = ["*"]

    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/${local.managed_tag}"
      values   = ["statehouse"]
    }
  }

  # DeregisterTaskDefinition supports no resource-level permission or condition in AWS.
  statement {
    sid       = "EcsDeregisterTaskDefinitions"
    actions   = local.worker_actions["EcsDeregisterTaskDefinitions"]
    resources = ["*"]
  }

  statement {
    sid       = "EcsDeleteTenantTaskDefinitions"
    actions   = local.worker_actions["EcsDeleteTenantTaskDefinitions"]
    resources = ["${local.arn_prefix}:ecs:${local.region}:${local.account_id}:task-definition/${local.prefix}-*:*"]
  }

  # Tags may be set only as part of creating a service or task definition.
  statement {
    sid       = "EcsTagOnCreate"
    actions   = local.worker_actions["EcsTagOnCreate"]
    resources = ["*"]

    condition {
      test     = "StringEquals"
      variable = "ecs:CreateAction"
      values   = ["CreateService", "RegisterTaskDefinition"]
    }
  }

  # The inventory lists and describes every service of the cell's cluster; rightsizing
  # lists and describes its stopped tasks to find the ones stopped for running out of memory.
  statement {
    sid       = "EcsReadCellServices"
    actions   = local.worker_actions["EcsReadCellServices"]
    resources = ["*"]

    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [local.cluster_arn]
    }
  }

  statement {
    sid       = "EcsTenantServices"
    actions   = local.worker_actions["EcsTenantServices"]
    resources = ["${local.arn_prefix}:ecs:${local.region}:${local.account_id}:service/${local.cluster_name}/${local.prefix}-*"]

    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [local.cluster_arn]
    }
  }

  statement {
    sid       = "ElbCreateTenantTargetGroups"
    actions   = local.worker_actions["ElbCreateTenantTargetGroups"]
    resources = [local.target_group]

    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/${local.managed_tag}"
      values   = ["statehouse"]
    }
  }

  statement {
    sid       = "ElbTenantTargetGroups"
    actions   = local.worker_actions["ElbTenantTargetGroups"]
    resources = [local.target_group]
  }

  statement {
    sid       = "ElbTagTenantResources"
    actions   = local.worker_actions["ElbTagTenantResources"]
    resources = [local.target_group, local.listener_rules]
  }

  statement {
    sid       = "ElbCreateRules"
    actions   = local.worker_actions["ElbCreateRules"]
    resources = [local.listener_arn, local.listener_rules]

    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/${local.managed_tag}"
      values   = ["statehouse"]
    }
  }

  # Rule ARNs carry no name, so only rules tagged as statehouse's (not the API's own rule).
  statement {
    sid       = "ElbTenantRules"
    actions   = local.worker_actions["ElbTenantRules"]
    resources = [local.listener_rules]

    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/${local.managed_tag}"
      values   = ["statehouse"]
    }
  }

  statement {
    sid       = "AutoscalingRegisterTargets"
    actions   = local.worker_actions["AutoscalingRegisterTargets"]
    resources = ["${local.arn_prefix}:application-autoscaling:${local.region}:${local.account_id}:scalable-target/*"]

    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/${local.managed_tag}"
      values   = ["statehouse"]
    }
  }

  # Scalable target ARNs carry a random id, so only targets tagged as statehouse's.
  statement {
    sid       = "AutoscalingTenantTargets"
    actions   = local.worker_actions["AutoscalingTenantTargets"]
    resources = ["${local.arn_prefix}:application-autoscaling:${local.region}:${local.account_id}:scalable-target/*"]

    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/${local.managed_tag}"
      values   = ["statehouse"]
    }
  }

  # The tenants' own alarms, {prefix}-{state}-{kind}, and the TargetTracking-… alarms that
  # target tracking creates and removes with the caller's permissions. Alarm actions
  # publish to the SNS topic under the topic's own policy: no SNS permission is needed.
  statement {
    sid     = "CloudWatchAlarms"
    actions = local.worker_actions["CloudWatchAlarms"]
    resources = [
      local.tenant_alarms,
      "${local.arn_prefix}:cloudwatch:${local.region}:${local.account_id}:alarm:TargetTracking-service/${local.cluster_name}/${local.prefix}-*",
    ]
  }

  # Tags go on the tenants' own alarms only.
  statement {
    sid       = "CloudWatchTagTenantAlarms"
    actions   = local.worker_actions["CloudWatchTagTenantAlarms"]
    resources = [local.tenant_alarms]
  }
}

data "aws_iam_policy_document" "tasks_trust" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "statehouse" {
  name               = "${var.name}-control-plane"
  description        = "statehouse's API and worker: manages {prefix}-* tenant resources only"
  assume_role_policy = data.aws_iam_policy_document.tasks_trust.json

  tags = var.tags
}

resource "aws_iam_role_policy" "worker" {
  name   = "reconcile-tenants"
  role   = aws_iam_role.statehouse.id
  policy = data.aws_iam_policy_document.worker.json

  lifecycle {
    precondition {
      condition     = length(setsubtract(keys(local.worker_actions), local.granted_statements)) == 0
      error_message = "worker-actions.json has a statement that iam.tf does not grant."
    }
  }
}

locals {
  granted_statements = [
    "AccountWideReads", "S3TenantBuckets", "S3TenantObjects", "DynamoDbTenantTables",
    "IamCreateTenantRoles", "IamTenantRoles", "IamPassTaskRoles", "IamAutoscalingServiceLinkedRole",
    "LogsTenantLogGroups", "EcsRegisterTaskDefinitions", "EcsDeregisterTaskDefinitions",
    "EcsDeleteTenantTaskDefinitions", "EcsTagOnCreate", "EcsReadCellServices", "EcsTenantServices",
    "ElbCreateTenantTargetGroups", "ElbTenantTargetGroups", "ElbTagTenantResources", "ElbCreateRules",
    "ElbTenantRules", "AutoscalingRegisterTargets", "AutoscalingTenantTargets", "CloudWatchAlarms",
    "CloudWatchTagTenantAlarms",
  ]
}

# Cells in other accounts (STATEHOUSE_CELLS_FILE, `role_arn` of a cell): the worker reaches
# each through the role that account gives it, and may assume exactly those roles.
data "aws_iam_policy_document" "assume_cell_roles" {
  count = length(var.cell_role_arns) > 0 ? 1 : 0

  statement {
    sid       = "AssumeCellRoles"
    actions   = ["sts:AssumeRole"]
    resources = var.cell_role_arns
  }
}

resource "aws_iam_role_policy" "assume_cell_roles" {
  count  = length(var.cell_role_arns) > 0 ? 1 : 0
  name   = "assume-cell-roles"
  role   = aws_iam_role.statehouse.id
  policy = data.aws_iam_policy_document.assume_cell_roles[0].json
}
