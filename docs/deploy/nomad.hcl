# The service under Nomad: a build worker on every client node (a system job's group), the API
# and the preview gateway as services. An example to adapt, not run by the tests (they parse it
# and check its tasks, commands and every ORCHESTRATOR_ name it sets).
#
# What it assumes (docs/scaling.md, "Kubernetes and Nomad"): the same as docs/deploy/kubernetes.yaml.
# Nomad's Docker driver must allow what a worker needs, in each client's plugin "docker" block:
#   volumes { enabled = true }                 (the engine's socket, the CA bundle)
#   allow_caps = [..the defaults.., "net_admin"] (the builds' firewall)
# A worker drives its node's engine and firewall: it is as trusted as the node itself.

job "website-orchestrator-workers" {
  type = "system"   # one worker on every client node

  group "worker" {
    task "worker" {
      driver = "docker"

      config {
        image        = "website-orchestrator/service:latest"
        command      = "orchestrator"
        args         = ["worker"]
        network_mode = "host"   # previews publish their ports on the node
        cap_add      = ["net_admin"]
        volumes = [
          "/var/run/docker.sock:/var/run/docker.sock",
          "/etc/ssl/certs/ca-certificates.crt:/etc/website-orchestrator/ca.pem:ro",
          "/srv/website-orchestrator:/var/lib/website-orchestrator",   # shared storage (NFS) for uploads
        ]
      }

      env {
        ORCHESTRATOR_HOST_ID      = "${node.unique.name}"
        ORCHESTRATOR_HOST_ADDRESS = "${attr.unique.network.ip-address}"
        ORCHESTRATOR_HOST_ENGINE  = "tcp://${attr.unique.network.ip-address}:2376"
        ORCHESTRATOR_CA_BUNDLE    = "/etc/website-orchestrator/ca.pem"
        ORCHESTRATOR_PREVIEW_BIND = "0.0.0.0"
      }

      template {
        # DATABASE_URL, REDIS_URL, ORCHESTRATOR_SHARE_SECRET, ORCHESTRATOR_NPM_REGISTRY…
        data        = "{{ with nomadVar \"website-orchestrator\" }}{{ range .Tuples }}{{ .K }}={{ .V }}\n{{ end }}{{ end }}"
        destination = "secrets/service.env"
        env         = true
      }

      resources {
        cpu    = 200
        memory = 512
      }
    }
  }
}

job "website-orchestrator" {
  type = "service"

  group "api" {
    count = 2

    network {
      port "http" { to = 8000 }
    }

    service {
      name = "website-orchestrator-api"
      port = "http"

      check {
        type     = "http"
        path     = "/api/health"
        interval = "10s"
        timeout  = "5s"
      }
    }

    task "api" {
      driver = "docker"

      config {
        image   = "website-orchestrator/service:latest"
        command = "orchestrator"
        args    = ["api", "--host", "0.0.0.0", "--port", "8000"]
        ports   = ["http"]
        volumes = ["/srv/website-orchestrator:/var/lib/website-orchestrator"]
      }

      env {
        DOCKER_TLS_VERIFY = "1"
        DOCKER_CERT_PATH  = "/secrets/docker-tls"   # client certificates of the nodes' engines
      }

      template {
        data        = "{{ with nomadVar \"website-orchestrator\" }}{{ range .Tuples }}{{ .K }}={{ .V }}\n{{ end }}{{ end }}"
        destination = "secrets/service.env"
        env         = true
      }

      resources {
        cpu    = 500
        memory = 512
      }
    }
  }

  group "gateway" {
    count = 2

    network {
      port "http" { to = 8800 }
    }

    service {
      name = "website-orchestrator-gateway"
      port = "http"
    }

    task "gateway" {
      driver = "docker"

      config {
        image   = "website-orchestrator/service:latest"
        command = "orchestrator"
        args    = ["gateway", "--host", "0.0.0.0", "--port", "8800"]
        ports   = ["http"]
      }

      env {
        DOCKER_TLS_VERIFY = "1"
        DOCKER_CERT_PATH  = "/secrets/docker-tls"
      }

      template {
        data        = "{{ with nomadVar \"website-orchestrator\" }}{{ range .Tuples }}{{ .K }}={{ .V }}\n{{ end }}{{ end }}"
        destination = "secrets/service.env"
        env         = true
      }

      resources {
        cpu    = 500
        memory = 256
      }
    }
  }
}
