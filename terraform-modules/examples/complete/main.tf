data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:Only the first three zone names are used (slice below), and new zones get later letters, so the set the network uses does not grow.
  state = "available"
}

module "network" {
  source = "../../network"

  name               = "statehouse"
  availability_zones = slice(data.aws_availability_zones.available.names, 0, 3)
  nat_gateway        = var.production ? "per_az" : "single"
}

module "platform" {
  source = "../../platform"

  name                = "statehouse"
  tenant_prefix       = "humangov"
  base_domain         = var.base_domain
  route53_zone_id     = var.route53_zone_id
  vpc_id              = module.network.vpc_id
  public_subnet_ids   = module.network.public_subnet_ids
  private_subnet_ids  = module.network.private_subnet_ids
  deletion_protection = var.production
}

module "control_plane" {
  source = "../../control-plane"

  name                            = "statehouse"
  platform                        = module.platform.environment
  load_balancer_security_group_id = module.platform.load_balancer_security_group_id
  private_subnet_ids              = module.network.private_subnet_ids
  image                           = "${local.statehouse_repository}:${var.statehouse_image_tag}"
  api_hostname                    = "statehouse.${var.base_domain}"
  api_allowed_cidrs               = var.api_allowed_cidrs
  db_multi_az                     = var.production
  deletion_protection             = var.production

  environment = {
    STATEHOUSE_DEFAULT_APP_IMAGE   = "${module.platform.repository_urls["app"]}:1.0.0"
    STATEHOUSE_DEFAULT_NGINX_IMAGE = "${module.platform.repository_urls["nginx"]}:1.27"
  }
}

# The control plane's repository is created by the module; its URL is known before the
# module is applied, so the image reference can be built from the account and region.
data "aws_caller_identity" "current" {}

locals {
  statehouse_repository = "${data.aws_caller_identity.current.account_id}.dkr.ecr.${var.region}.amazonaws.com/statehouse"
}
