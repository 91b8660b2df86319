variable "name" {
  description = "Name of the shared platform (cluster, load balancer, execution role) and prefix of its resources."
  type        = string
  default     = "statehouse"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}[a-z0-9]$", var.name))
    error_message = "name must be 3-22 lowercase letters, digits or hyphens, starting with a letter (the load balancer's name must fit in 32 characters)."
  }
}

variable "cell" {
  description = "Name of this cell (one load balancer and cluster); becomes STATEHOUSE_CELL."
  type        = string
  default     = "cell-1"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,30}$", var.cell))
    error_message = "cell must be up to 31 lowercase letters, digits or hyphens."
  }
}

variable "tenant_prefix" {
  description = "Prefix of every tenant resource name (STATEHOUSE_PREFIX); the execution role may only read images under it and write log groups under /{prefix}/."
  type        = string
  default     = "humangov"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,8}[a-z0-9]$", var.tenant_prefix)) || can(regex("^[a-z]$", var.tenant_prefix))
    error_message = "tenant_prefix must be 1-10 lowercase letters, digits or hyphens, starting with a letter and not ending with a hyphen (so every state's bucket name fits in 63 characters)."
  }
}

variable "base_domain" {
  description = "Tenants answer on https://{state}.{base_domain}; a wildcard certificate and DNS record are made for it."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]*[a-z0-9])?\\.)+[a-z]{2,}$", var.base_domain))
    error_message = "base_domain must be a lowercase DNS name such as states.example.gov."
  }
}

variable "route53_zone_id" {
  description = "Route 53 hosted zone that holds base_domain (for certificate validation and the wildcard record)."
  type        = string

  validation {
    condition     = can(regex("^Z[A-Z0-9]{1,31}$", var.route53_zone_id))
    error_message = "route53_zone_id must be a Route 53 hosted zone id (Z…)."
  }
}

variable "vpc_id" {
  description = "The VPC (the network module's vpc_id)."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id must be a VPC id (vpc-…)."
  }
}

variable "public_subnet_ids" {
  description = "Subnets of the internet-facing load balancer, in two or more zones."
  type        = list(string)

  validation {
    condition     = length(var.public_subnet_ids) >= 2 && alltrue([for s in var.public_subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "Give two or more subnet ids (subnet-…)."
  }
}

variable "private_subnet_ids" {
  description = "Subnets the tenants' tasks run in (STATEHOUSE_SUBNETS); they need no public IP."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2 && alltrue([for s in var.private_subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "Give two or more subnet ids (subnet-…)."
  }
}

variable "ingress_cidrs" {
  description = "IPv4 ranges allowed to reach the load balancer on ports 80 (redirected) and 443."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = length(var.ingress_cidrs) > 0 && alltrue([for c in var.ingress_cidrs : can(cidrnetmask(c))])
    error_message = "ingress_cidrs must be one or more IPv4 CIDRs."
  }
}

variable "ssl_policy" {
  description = "TLS policy of the HTTPS listener."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"

  validation {
    condition     = can(regex("^ELBSecurityPolicy-TLS13-", var.ssl_policy))
    error_message = "ssl_policy must be one of the ELBSecurityPolicy-TLS13-* policies (TLS 1.2 and 1.3 only)."
  }
}

variable "deletion_protection" {
  description = "Refuse to delete the shared load balancer (turn off only to tear the platform down)."
  type        = bool
  default     = true
}

variable "web_acl_arn" {
  description = "ARN of a WAFv2 web ACL to put in front of the load balancer, or null for none."
  type        = string
  default     = null

  validation {
    condition     = var.web_acl_arn == null || can(regex("^arn:aws[a-z-]*:wafv2:", var.web_acl_arn))
    error_message = "web_acl_arn must be a WAFv2 web ACL ARN."
  }
}

variable "access_log_retention_days" {
  description = "Days the load balancer's access logs are kept."
  type        = number
  default     = 365

  validation {
    condition     = var.access_log_retention_days >= 1
    error_message = "access_log_retention_days must be at least 1."
  }
}

variable "ecr_keep_images" {
  description = "Images kept in each ECR repository; older ones are expired."
  type        = number
  default     = 50

  validation {
    condition     = var.ecr_keep_images >= 1 && var.ecr_keep_images <= 1000
    error_message = "ecr_keep_images must be between 1 and 1000."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
