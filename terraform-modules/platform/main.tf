data "aws_region" "current" {}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  region     = data.aws_region.current.name
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
}

resource "aws_ecs_cluster" "this" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  tags = var.tags
}

resource "aws_ecs_cluster_capacity_providers" "this" {
  cluster_name       = aws_ecs_cluster.this.name
  capacity_providers = ["FARGATE", "FARGATE_SPOT"]

  default_capacity_provider_strategy {
    capacity_provider = "FARGATE"
    weight            = 1
  }
}

# The security group every tenant task runs in: HTTP from the shared load balancer only.
resource "aws_security_group" "tasks" {
  #checkov:skip=CKV2_AWS_5:statehouse attaches this group to every tenant's ECS service at run time (STATEHOUSE_SECURITY_GROUPS), outside terraform.
  name        = "${var.name}-tasks"
  description = "Tenant tasks: HTTP only from the shared load balancer"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-tasks" })
}

resource "aws_vpc_security_group_ingress_rule" "tasks_from_alb" {
  #checkov:skip=CKV_AWS_260:The source is the load balancer's security group (referenced_security_group_id), not an address range; checkov reads the missing CIDR as 0.0.0.0/0.
  security_group_id            = aws_security_group.tasks.id
  description                  = "nginx on port 80, from the shared load balancer"
  ip_protocol                  = "tcp"
  from_port                    = 80
  to_port                      = 80
  referenced_security_group_id = aws_security_group.alb.id
}

resource "aws_vpc_security_group_egress_rule" "tasks_https" {
  security_group_id = aws_security_group.tasks.id
  description       = "HTTPS to AWS APIs and ECR (VPC endpoints or NAT)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

# The role ECS uses to start every tenant's tasks: pull this platform's images and write
# the tenants' log groups, nothing else.
data "aws_iam_policy_document" "ecs_tasks_trust" {
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

resource "aws_iam_role" "execution" {
  name               = "${var.name}-task-execution"
  description        = "Starts tenant tasks: pulls the app and nginx images, writes /${var.tenant_prefix}/* logs"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_trust.json

  tags = var.tags
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid       = "PullPlatformImages"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
    resources = [for r in aws_ecr_repository.this : r.arn]
  }

  statement {
    sid       = "WriteTenantLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/${var.tenant_prefix}/*"]
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "pull-images-and-write-logs"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}
