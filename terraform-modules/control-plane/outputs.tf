output "api_url" {
  description = "statehouse's API (Swagger UI at /docs/)."
  value       = "https://${var.api_hostname}"
}

output "repository_url" {
  description = "ECR repository to push statehouse's image to (tags are immutable)."
  value       = aws_ecr_repository.statehouse.repository_url
}

output "role_arn" {
  description = "The IAM role statehouse runs as (the worker's least-privilege policy)."
  value       = aws_iam_role.statehouse.arn
}

output "bootstrap_token_secret_arn" {
  description = "Secrets Manager secret holding STATEHOUSE_BOOTSTRAP_ADMIN_TOKEN; read it with aws secretsmanager get-secret-value."
  value       = aws_secretsmanager_secret.bootstrap_token.arn
}

output "bootstrap_token" {
  description = "The bootstrap admin token itself (sensitive: terraform output -raw bootstrap_token)."
  value       = random_password.bootstrap_token.result
  sensitive   = true
}

output "database_endpoint" {
  description = "Address and port of statehouse's database."
  value       = "${aws_db_instance.this.address}:${aws_db_instance.this.port}"
}

output "database_secret_arn" {
  description = "Secrets Manager secret (kept by RDS) with the database user's password."
  value       = aws_db_instance.this.master_user_secret[0].secret_arn
}

output "environment" {
  description = "The environment statehouse runs with (DATABASE_URL carries no password; PGPASSWORD comes from the database secret)."
  value       = local.api_env
}

output "cluster_name" {
  description = "The cluster statehouse's service runs in."
  value       = local.cluster_name
}

output "service_name" {
  description = "statehouse's ECS service."
  value       = aws_ecs_service.statehouse.name
}
