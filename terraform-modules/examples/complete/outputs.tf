output "api_url" {
  description = "statehouse's API; the Swagger UI is at /docs/."
  value       = module.control_plane.api_url
}

output "bootstrap_token_secret_arn" {
  description = "Where the first admin token is kept."
  value       = module.control_plane.bootstrap_token_secret_arn
}

output "repository_urls" {
  description = "Where to push images: statehouse, and the tenants' app and nginx."
  value       = merge(module.platform.repository_urls, { statehouse = module.control_plane.repository_url })
}

output "platform_env" {
  description = "The platform's settings as an env file for a statehouse run outside ECS (set -a; . platform.env; set +a)."
  value       = join("", [for k, v in module.platform.environment : "${k}=${v}\n"])
}
