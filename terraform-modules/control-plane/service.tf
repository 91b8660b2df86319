# statehouse on Fargate in the private subnets, behind a host rule on the shared HTTPS
# listener. Every task serves the API and runs a worker; they share work through Postgres.

resource "aws_security_group" "statehouse" {
  name        = "${var.name}-control-plane"
  description = "statehouse tasks: the API from the load balancer, out to AWS APIs and the database"
  vpc_id      = var.platform["STATEHOUSE_VPC_ID"]

  tags = merge(var.tags, { Name = "${var.name}-control-plane" })
}

resource "aws_vpc_security_group_ingress_rule" "api_from_alb" {
  security_group_id            = aws_security_group.statehouse.id
  description                  = "The API, from the shared load balancer"
  ip_protocol                  = "tcp"
  from_port                    = 8080
  to_port                      = 8080
  referenced_security_group_id = var.load_balancer_security_group_id
}

resource "aws_vpc_security_group_egress_rule" "alb_to_api" {
  security_group_id            = var.load_balancer_security_group_id
  description                  = "The load balancer forwards the API host to statehouse"
  ip_protocol                  = "tcp"
  from_port                    = 8080
  to_port                      = 8080
  referenced_security_group_id = aws_security_group.statehouse.id
}

resource "aws_vpc_security_group_egress_rule" "statehouse_https" {
  security_group_id = aws_security_group.statehouse.id
  description       = "HTTPS to the AWS APIs (NAT or VPC endpoints)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "statehouse_db" {
  security_group_id            = aws_security_group.statehouse.id
  description                  = "PostgreSQL"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.db.id
}

resource "aws_lb_target_group" "api" {
  #checkov:skip=CKV_AWS_378:TLS ends at the shared load balancer; the hop to the task stays inside the VPC, on a security group that admits only the load balancer.
  name                 = "${var.name}-api"
  target_type          = "ip"
  protocol             = "HTTP"
  port                 = 8080
  vpc_id               = var.platform["STATEHOUSE_VPC_ID"]
  deregistration_delay = 30

  health_check {
    path                = "/readyz"
    matcher             = "200"
    interval            = 15
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = var.tags
}

resource "aws_lb_listener_rule" "api" {
  listener_arn = local.listener_arn
  priority     = var.listener_rule_priority

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.api.arn
  }

  condition {
    host_header {
      values = [var.api_hostname]
    }
  }

  dynamic "condition" {
    for_each = length(var.api_allowed_cidrs) > 0 ? [var.api_allowed_cidrs] : []

    content {
      source_ip {
        values = condition.value
      }
    }
  }

  tags = var.tags
}

# Starts statehouse's tasks: pulls its image, writes its logs, reads its two secrets.
resource "aws_iam_role" "execution" {
  name               = "${var.name}-control-plane-execution"
  assume_role_policy = data.aws_iam_policy_document.tasks_trust.json

  tags = var.tags
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid       = "PullStatehouse"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
    resources = [aws_ecr_repository.statehouse.arn]
  }

  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.this.arn}:*"]
  }

  statement {
    sid       = "ReadSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_db_instance.this.master_user_secret[0].secret_arn, aws_secretsmanager_secret.bootstrap_token.arn]
  }

  statement {
    sid       = "DecryptSecrets"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.this.arn]
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "start-statehouse"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

resource "aws_ecs_task_definition" "statehouse" {
  family                   = "${var.name}-control-plane"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.statehouse.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  container_definitions = jsonencode([{
    name                   = "statehouse"
    image                  = var.image
    essential              = true
    command                = ["serve"]
    readonlyRootFilesystem = true
    portMappings           = [{ containerPort = 8080, protocol = "tcp" }]
    environment            = [for k in sort(keys(local.api_env)) : { name = k, value = local.api_env[k] }]
    secrets = [
      { name = "PGPASSWORD", valueFrom = "${aws_db_instance.this.master_user_secret[0].secret_arn}:password::" },
      { name = "STATEHOUSE_BOOTSTRAP_ADMIN_TOKEN", valueFrom = aws_secretsmanager_secret.bootstrap_token.arn },
    ]
    healthCheck = {
      command     = ["CMD", "statehouse", "healthcheck"]
      interval    = 15
      timeout     = 5
      retries     = 3
      startPeriod = 30
    }
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.this.name
        awslogs-region        = local.region
        awslogs-stream-prefix = "statehouse"
      }
    }
  }])

  tags = var.tags
}

resource "aws_ecs_service" "statehouse" {
  name                   = "${var.name}-control-plane"
  cluster                = local.cluster_arn
  task_definition        = aws_ecs_task_definition.statehouse.arn
  desired_count          = var.desired_count
  launch_type            = "FARGATE"
  propagate_tags         = "SERVICE"
  enable_execute_command = false

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.statehouse.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.api.arn
    container_name   = "statehouse"
    container_port   = 8080
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  tags = var.tags

  depends_on = [aws_lb_listener_rule.api, aws_iam_role_policy.worker]
}
