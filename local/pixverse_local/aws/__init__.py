"""The local stack's AWS, one module per service, as strict as AWS where AWS is strict.

* ``template`` / ``provision``: CloudFormation - template.yaml read (parameters, conditions,
  intrinsics) and its stateful resources created in moto server, Lambda's account quotas checked.
* ``moto_server`` / ``timescale``: moto server in its own process, with the limits moto lacks
  (SNS 256 KiB, DynamoDB 400 KB and 32 levels, SQS message bytes, per-item write serialization)
  and one time scale for every emulated delay.
* ``apigateway`` / ``authorizers``: API Gateway HTTP API - routes, payload 2.0 events, the caller's
  identity, integration timeouts and API Gateway's own answers.
* ``lambda_runtime``: Lambda - containers, the function's Timeout, the 6 MB response, concurrency.
* ``lambda_logs``: CloudWatch Logs as each function writes them - logger keys and cold start per
  execution environment.
* ``sqs_event_source`` / ``schedules``: the SQS event source mapping and EventBridge schedules.
* ``client_hooks``: test hooks on the functions' AWS clients (a call log, injected faults).

The gateway simulator lives apart, in ``pixverse_local.gateway_sim``.
"""
