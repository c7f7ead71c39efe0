"""Connection timeouts the service and the load balancer in front of it must agree on.

Standard library only and free of side effects, so the service (gunicorn's config) and the Pulumi
program (infra/load_balancer.py) import the same numbers without either pulling in the other.

AWS: "we recommend that you configure the idle timeout of your application to be larger than the
idle timeout configured for the load balancer" (Elastic Load Balancing, Application Load Balancers,
"Connection idle timeout"). Otherwise the app closes a keep-alive connection the balancer still
thinks is open, and the next request the balancer sends on it comes back as a 502.
"""

from __future__ import annotations

# The ALB's idle timeout, set explicitly (it is also AWS's default): a connection with no data for
# this long is closed by the balancer.
LOAD_BALANCER_IDLE_TIMEOUT_S = 60
# How much longer the app keeps an idle keep-alive connection open, so the balancer always closes first.
KEEPALIVE_MARGIN_S = 5
# gunicorn's keepalive: derived, never set on its own.
APP_KEEPALIVE_S = LOAD_BALANCER_IDLE_TIMEOUT_S + KEEPALIVE_MARGIN_S
