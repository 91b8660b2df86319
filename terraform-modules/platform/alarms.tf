# Where the tenants' CloudWatch alarms (src/reconcile/alarms.rs) report: every change to
# ALARM and back to OK is published here, for the on-call pager or a chat hook to subscribe
# to. Encrypted with a key of its own, since CloudWatch cannot publish to a topic that uses
# the AWS managed SNS key.

# A key policy: "*" is the key itself, and the account's root principal is how a key
# policy hands the key's administration to the account's IAM policies.
data "aws_iam_policy_document" "alarm_key" {
  #checkov:skip=CKV_AWS_356:In a key policy the resource "*" means this key and no other.
  #checkov:skip=CKV_AWS_111:Only the account itself (through its IAM policies) and CloudWatch, for this account's alarms, are principals.
  #checkov:skip=CKV_AWS_109:Key administration stays with the account; without it the key could not be managed at all.
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid       = "CloudWatchPublishesAlarms"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_kms_key" "alarms" {
  description         = "${var.name}: encrypts the tenants' alarm topic"
  enable_key_rotation = true
  policy              = data.aws_iam_policy_document.alarm_key.json

  tags = var.tags
}

resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-tenant-alarms"
  kms_master_key_id = aws_kms_key.alarms.arn

  tags = var.tags
}

data "aws_iam_policy_document" "alarm_topic" {
  statement {
    sid       = "TenantAlarmsPublish"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms.arn]

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:cloudwatch:${local.region}:${local.account_id}:alarm:${var.tenant_prefix}-*"]
    }
  }
}

resource "aws_sns_topic_policy" "alarms" {
  arn    = aws_sns_topic.alarms.arn
  policy = data.aws_iam_policy_document.alarm_topic.json
}
