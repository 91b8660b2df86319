variable "name" {
  description = "Name of the network and prefix of every resource in it."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name))
    error_message = "name must be 3-32 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "cidr_block" {
  description = "IPv4 range of the VPC; the subnets are carved from it (/20 each by default)."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrnetmask(var.cidr_block)) && tonumber(split("/", var.cidr_block)[1]) <= 20
    error_message = "cidr_block must be an IPv4 CIDR of /20 or larger."
  }
}

variable "subnet_newbits" {
  description = "Bits added to the VPC prefix for each subnet (4 turns a /16 into /20 subnets)."
  type        = number
  default     = 4

  validation {
    condition     = var.subnet_newbits >= 2 && var.subnet_newbits <= 8
    error_message = "subnet_newbits must be between 2 and 8."
  }
}

variable "availability_zones" {
  description = "Two or three availability zones of the region to spread the subnets over."
  type        = list(string)

  validation {
    condition     = length(var.availability_zones) >= 2 && length(var.availability_zones) <= 3
    error_message = "Give two or three availability zones."
  }
}

variable "nat_gateway" {
  description = "NAT for the private subnets: \"none\" (VPC endpoints only), \"single\" (one gateway, cheaper) or \"per_az\" (one per zone, survives a zone outage). The control plane needs NAT to reach IAM, ELB, ECS and Application Auto Scaling unless you add endpoints for them."
  type        = string
  default     = "single"

  validation {
    condition     = contains(["none", "single", "per_az"], var.nat_gateway)
    error_message = "nat_gateway must be none, single or per_az."
  }
}

variable "interface_endpoints" {
  description = "AWS services reached through interface VPC endpoints from the private subnets (short names such as ecr.api). S3 and DynamoDB always get gateway endpoints."
  type        = list(string)
  default     = ["ecr.api", "ecr.dkr", "logs", "sts", "secretsmanager"]

  validation {
    condition     = alltrue([for s in var.interface_endpoints : can(regex("^[a-z0-9.-]+$", s))])
    error_message = "interface_endpoints are service short names such as ecr.api or logs."
  }
}

variable "flow_log_retention_days" {
  description = "Days the VPC flow logs are kept in CloudWatch Logs."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.flow_log_retention_days)
    error_message = "flow_log_retention_days must be a retention period CloudWatch Logs accepts (for example 30, 90, 365)."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
