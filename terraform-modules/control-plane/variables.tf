variable "name" {
  description = "Name of statehouse's own resources (service, database, roles)."
  type        = string
  default     = "statehouse"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}[a-z0-9]$", var.name))
    error_message = "name must be 3-22 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "platform" {
  description = "The platform module's `environment` output: the STATEHOUSE_* settings of the cell statehouse places tenants in. The worker's IAM policy is scoped by these."
  type        = map(string)

  validation {
    condition = alltrue([for k in [
      "STATEHOUSE_PREFIX", "STATEHOUSE_CELL", "STATEHOUSE_BASE_DOMAIN", "STATEHOUSE_CLUSTER",
      "STATEHOUSE_LISTENER_ARN", "STATEHOUSE_VPC_ID", "STATEHOUSE_SUBNETS",
      "STATEHOUSE_SECURITY_GROUPS", "STATEHOUSE_EXECUTION_ROLE_ARN", "STATEHOUSE_ACCOUNT_ID", "AWS_REGION",
    ] : contains(keys(var.platform), k)])
    error_message = "platform must be the platform module's environment output (every STATEHOUSE_* setting of one cell)."
  }
}

variable "load_balancer_security_group_id" {
  description = "Security group of the shared load balancer (the platform module's load_balancer_security_group_id); statehouse's API is reached through it."
  type        = string

  validation {
    condition     = can(regex("^sg-[0-9a-f]+$", var.load_balancer_security_group_id))
    error_message = "load_balancer_security_group_id must be a security group id (sg-…)."
  }
}

variable "image" {
  description = "statehouse's container image, by immutable tag or digest (for example the URL of this module's repository_url output with :1.0.0)."
  type        = string

  validation {
    condition     = can(regex("^[^:@]+(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})$", var.image)) && !endswith(var.image, ":latest")
    error_message = "image must name a tag (not latest) or a sha256 digest."
  }
}

variable "api_hostname" {
  description = "Host name of statehouse's API on the shared load balancer; must be covered by the wildcard certificate (one label under base_domain) and must not be a state's name."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9-]+\\.", var.api_hostname))
    error_message = "api_hostname must be a DNS name such as statehouse.states.example.gov."
  }
}

variable "api_allowed_cidrs" {
  description = "Source IPv4 ranges allowed to reach the API through the load balancer (at most 5); empty allows any address the load balancer admits."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.api_allowed_cidrs) <= 5 && alltrue([for c in var.api_allowed_cidrs : can(cidrnetmask(c))])
    error_message = "api_allowed_cidrs must be at most 5 IPv4 CIDRs."
  }
}

variable "listener_rule_priority" {
  description = "Priority of the API's host rule on the shared listener. statehouse allocates tenant priorities from 1 upward and skips any rule it does not own, so the default (last) never clashes."
  type        = number
  default     = 50000

  validation {
    condition     = var.listener_rule_priority >= 1 && var.listener_rule_priority <= 50000
    error_message = "listener_rule_priority must be between 1 and 50000."
  }
}

variable "private_subnet_ids" {
  description = "Private subnets for statehouse's tasks and its database, in two or more zones."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2 && alltrue([for s in var.private_subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "Give two or more subnet ids (subnet-…)."
  }
}

variable "desired_count" {
  description = "statehouse tasks (each serves the API and runs a worker; they coordinate through Postgres)."
  type        = number
  default     = 2

  validation {
    condition     = var.desired_count >= 1 && var.desired_count <= 10
    error_message = "desired_count must be between 1 and 10."
  }
}

variable "cpu" {
  description = "Fargate CPU units of a statehouse task."
  type        = number
  default     = 512

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096], var.cpu)
    error_message = "cpu must be 256, 512, 1024, 2048 or 4096."
  }
}

variable "memory" {
  description = "Fargate memory (MiB) of a statehouse task; must suit cpu."
  type        = number
  default     = 1024

  validation {
    condition     = var.memory >= 512 && var.memory <= 30720
    error_message = "memory must be between 512 and 30720 MiB."
  }
}

variable "environment" {
  description = "Further statehouse settings (STATEHOUSE_DEFAULT_*, STATEHOUSE_WORKER_CONCURRENCY, …); see README's Configuration table."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.environment) : can(regex("^STATEHOUSE_[A-Z0-9_]+$", k)) && k != "STATEHOUSE_BOOTSTRAP_ADMIN_TOKEN"])
    error_message = "environment takes STATEHOUSE_* settings only; the bootstrap token comes from Secrets Manager."
  }
}

variable "db_instance_class" {
  description = "RDS instance class of statehouse's PostgreSQL database."
  type        = string
  default     = "db.t4g.small"

  validation {
    condition     = can(regex("^db\\.", var.db_instance_class))
    error_message = "db_instance_class must be an RDS instance class (db.…)."
  }
}

variable "db_engine_version" {
  description = "PostgreSQL major version of the database."
  type        = string
  default     = "16"

  validation {
    condition     = contains(["15", "16", "17"], var.db_engine_version)
    error_message = "db_engine_version must be 15, 16 or 17."
  }
}

variable "db_allocated_storage" {
  description = "Storage of the database in GiB (it grows on its own up to ten times this)."
  type        = number
  default     = 20

  validation {
    condition     = var.db_allocated_storage >= 20 && var.db_allocated_storage <= 6000
    error_message = "db_allocated_storage must be between 20 and 6000 GiB."
  }
}

variable "db_backup_retention_days" {
  description = "Days of automated database backups (point-in-time recovery window)."
  type        = number
  default     = 14

  validation {
    condition     = var.db_backup_retention_days >= 1 && var.db_backup_retention_days <= 35
    error_message = "db_backup_retention_days must be between 1 and 35."
  }
}

variable "db_multi_az" {
  description = "Run the database with a standby in a second zone."
  type        = bool
  default     = true
}

variable "deletion_protection" {
  description = "Refuse to delete the database (turn off only to tear the control plane down)."
  type        = bool
  default     = true
}

variable "log_retention_days" {
  description = "Days statehouse's own logs are kept."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention period CloudWatch Logs accepts (for example 30, 90, 365)."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

variable "db_ssl_mode" {
  description = "How statehouse checks the database's TLS: `require` encrypts; `verify-full` also checks the server's certificate, which needs the Amazon RDS CA bundle in the image's trust store."
  type        = string
  default     = "require"

  validation {
    condition     = contains(["require", "verify-ca", "verify-full"], var.db_ssl_mode)
    error_message = "db_ssl_mode must be require, verify-ca or verify-full (the database accepts TLS connections only)."
  }
}

variable "cell_role_arns" {
  description = "Roles of cells in other accounts (each cell's role_arn in the cells file) that statehouse may assume; see the platform module's README, \"A cell in another account\"."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.cell_role_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]+$", arn))])
    error_message = "cell_role_arns must be IAM role ARNs (arn:aws:iam::123456789012:role/name)."
  }
}
