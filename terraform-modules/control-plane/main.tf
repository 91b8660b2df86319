locals {
  db_name = replace(var.name, "-", "_")
  # statehouse's own target group and rule sit on the cell's load balancer, which holds 100
  # target groups at most: 99 are left for tenants (var.environment may lower it further).
  api_env = merge({ STATEHOUSE_CELL_CAPACITY = "99" }, var.platform, var.environment, {
    STATEHOUSE_LISTEN     = "0.0.0.0:8080"
    STATEHOUSE_LOG_FORMAT = "json"
    DATABASE_URL          = "postgres://${aws_db_instance.this.username}@${aws_db_instance.this.address}:${aws_db_instance.this.port}/${local.db_name}?sslmode=${var.db_ssl_mode}"
  })
}

# One key for statehouse's own data at rest: its logs, database, and secrets.
resource "aws_kms_key" "this" {
  description         = "${var.name}: control plane logs, database and secrets"
  enable_key_rotation = true
  policy              = data.aws_iam_policy_document.key.json

  tags = var.tags
}

data "aws_iam_policy_document" "key" {
  #checkov:skip=CKV_AWS_109:A key policy's Resource is always "*" (the key itself); the account root statement is what lets IAM policies grant use of the key.
  #checkov:skip=CKV_AWS_111:A key policy's Resource is always "*" (the key itself); the account root statement is what lets IAM policies grant use of the key.
  #checkov:skip=CKV_AWS_356:A key policy's Resource is always "*" (the key itself).
  statement {
    sid       = "AccountAdministersTheKey"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid       = "CloudWatchLogsEncryptsStatehouseLogs"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/${var.name}/*"]
    }
  }
}

resource "aws_cloudwatch_log_group" "this" {
  name              = "/${var.name}/control-plane"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn

  tags = var.tags
}

resource "aws_ecr_repository" "statehouse" {
  name                 = var.name
  image_tag_mutability = "IMMUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = aws_kms_key.this.arn
  }

  tags = var.tags
}

resource "aws_ecr_lifecycle_policy" "statehouse" {
  repository = aws_ecr_repository.statehouse.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "Keep the newest 30 images"
      selection    = { tagStatus = "any", countType = "imageCountMoreThan", countNumber = 30 }
      action       = { type = "expire" }
    }]
  })
}

# A first admin token (STATEHOUSE_BOOTSTRAP_ADMIN_TOKEN) until real API keys are made with
# `statehouse keys create`; it is kept in Secrets Manager and given to the task from there.
resource "random_password" "bootstrap_token" {
  length  = 48
  special = false
}

resource "aws_secretsmanager_secret" "bootstrap_token" {
  #checkov:skip=CKV2_AWS_57:The bootstrap token is meant for first boot only; replace it (or unset it) once real API keys exist rather than rotating it on a schedule.
  name_prefix = "${var.name}/bootstrap-admin-token-"
  description = "STATEHOUSE_BOOTSTRAP_ADMIN_TOKEN of the statehouse control plane"
  kms_key_id  = aws_kms_key.this.arn

  tags = var.tags
}

resource "aws_secretsmanager_secret_version" "bootstrap_token" {
  secret_id     = aws_secretsmanager_secret.bootstrap_token.id
  secret_string = random_password.bootstrap_token.result
}
