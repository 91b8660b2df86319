variable "region" {
  description = "AWS region to deploy to."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as us-east-1."
  }
}

variable "base_domain" {
  description = "Tenants answer on https://{state}.{base_domain}, statehouse on https://statehouse.{base_domain}."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]*[a-z0-9])?\\.)+[a-z]{2,}$", var.base_domain))
    error_message = "base_domain must be a lowercase DNS name such as states.example.gov."
  }
}

variable "route53_zone_id" {
  description = "Route 53 hosted zone of base_domain."
  type        = string

  validation {
    condition     = can(regex("^Z[A-Z0-9]{1,31}$", var.route53_zone_id))
    error_message = "route53_zone_id must be a Route 53 hosted zone id (Z…)."
  }
}

variable "statehouse_image_tag" {
  description = "Tag of the statehouse image pushed to the control plane's repository (see the README's Deploy to AWS)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.statehouse_image_tag)) && var.statehouse_image_tag != "latest"
    error_message = "statehouse_image_tag must be an image tag other than latest."
  }
}

variable "api_allowed_cidrs" {
  description = "Source ranges allowed to reach statehouse's API (empty: any)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.api_allowed_cidrs : can(cidrnetmask(c))])
    error_message = "api_allowed_cidrs must be IPv4 CIDRs."
  }
}

variable "production" {
  description = "Production settings: NAT per zone, deletion protection, a standby database."
  type        = bool
  default     = true
}
