# Not worker settings: what the control-plane module and image pushes need from the platform.

output "load_balancer_security_group_id" {
  description = "Security group of the shared load balancer (the control plane admits it)."
  value       = aws_security_group.alb.id
}

output "load_balancer_dns_name" {
  description = "DNS name of the shared load balancer (the wildcard record points at it)."
  value       = aws_lb.this.dns_name
}

output "cluster_arn" {
  description = "ARN of the ECS cluster (for policies scoped to it)."
  value       = aws_ecs_cluster.this.arn
}

output "repository_urls" {
  description = "ECR repository URLs by image: app and nginx; push tenant images here."
  value       = { for k, r in aws_ecr_repository.this : k => r.repository_url }
}
