# One output per setting of statehouse's worker (src/config.rs), named after it without the
# STATEHOUSE_ prefix, and `environment` with all of them as the worker reads them.

output "prefix" {
  description = "STATEHOUSE_PREFIX: prefix of every tenant resource name."
  value       = var.tenant_prefix
}

output "cell" {
  description = "STATEHOUSE_CELL: the cell this load balancer and cluster make up."
  value       = var.cell
}

output "base_domain" {
  description = "STATEHOUSE_BASE_DOMAIN: tenants answer on https://{state}.{base_domain}."
  value       = var.base_domain
}

output "cluster" {
  description = "STATEHOUSE_CLUSTER: the ECS cluster of the cell."
  value       = aws_ecs_cluster.this.name
}

output "listener_arn" {
  description = "STATEHOUSE_LISTENER_ARN: the shared HTTPS listener the tenants' host rules go on."
  value       = aws_lb_listener.https.arn
}

output "vpc_id" {
  description = "STATEHOUSE_VPC_ID: the VPC of the tenants' target groups."
  value       = var.vpc_id
}

output "subnets" {
  description = "STATEHOUSE_SUBNETS (comma separated): private subnets of the tenants' tasks."
  value       = var.private_subnet_ids
}

output "security_groups" {
  description = "STATEHOUSE_SECURITY_GROUPS (comma separated): the tenants' tasks security group."
  value       = [aws_security_group.tasks.id]
}

output "execution_role_arn" {
  description = "STATEHOUSE_EXECUTION_ROLE_ARN: the shared task execution role."
  value       = aws_iam_role.execution.arn
}

output "alarm_topic_arn" {
  description = "STATEHOUSE_ALARM_TOPIC_ARN: the SNS topic every tenant alarm notifies."
  value       = aws_sns_topic.alarms.arn
}

output "account_id" {
  description = "STATEHOUSE_ACCOUNT_ID: the AWS account."
  value       = local.account_id
}

output "region" {
  description = "AWS_REGION: the region of the platform."
  value       = local.region
}

output "environment" {
  description = "All of the above as the environment variables statehouse's worker reads."
  value = {
    STATEHOUSE_PREFIX             = var.tenant_prefix
    STATEHOUSE_CELL               = var.cell
    STATEHOUSE_BASE_DOMAIN        = var.base_domain
    STATEHOUSE_CLUSTER            = aws_ecs_cluster.this.name
    STATEHOUSE_LISTENER_ARN       = aws_lb_listener.https.arn
    STATEHOUSE_VPC_ID             = var.vpc_id
    STATEHOUSE_SUBNETS            = join(",", var.private_subnet_ids)
    STATEHOUSE_SECURITY_GROUPS    = aws_security_group.tasks.id
    STATEHOUSE_EXECUTION_ROLE_ARN = aws_iam_role.execution.arn
    STATEHOUSE_ALARM_TOPIC_ARN    = aws_sns_topic.alarms.arn
    STATEHOUSE_ACCOUNT_ID         = local.account_id
    AWS_REGION                    = local.region
  }
}
