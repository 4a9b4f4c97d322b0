"""A tiny standalone Katib-compatible Suggestion server: "hill-climb".

Any server speaking Katib's api.v1.beta1.Suggestion works with tunery (and with Katib). This one
uses only grpcio and the generated stubs: it perturbs the best completed trial's numeric values
(or samples uniformly when there is none). Run it, then point tunery at it:

    python examples/custom-algorithm/server.py --port 7000 &
    tunery run examples/custom-algorithm/experiment.yaml \
        --suggestion-endpoint hill-climb=localhost:7000
"""

from __future__ import annotations

import argparse
import random
from concurrent import futures

import grpc

from tunery.api import api_pb2, api_pb2_grpc


class HillClimb(api_pb2_grpc.SuggestionServicer):
    def ValidateAlgorithmSettings(self, request, context):
        for p in request.experiment.spec.parameter_specs.parameters:
            if p.parameter_type not in (api_pb2.DOUBLE, api_pb2.INT):
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"hill-climb supports double/int parameters only, not {p.name}",
                )
        return api_pb2.ValidateAlgorithmSettingsReply()

    def GetSuggestions(self, request, context):
        spec = request.experiment.spec
        sign = -1 if spec.objective.type == api_pb2.MAXIMIZE else 1
        metric = spec.objective.objective_metric_name
        best, best_value = None, None
        for trial in request.trials:
            if trial.status.condition != api_pb2.TrialStatus.SUCCEEDED:
                continue
            values = [m.value for m in trial.status.observation.metrics if m.name == metric]
            if values and (best_value is None or sign * float(values[0]) < sign * best_value):
                best_value = float(values[0])
                assigned = trial.spec.parameter_assignments.assignments
                best = {a.name: float(a.value) for a in assigned}
        rng = random.Random(len(request.trials))
        reply = api_pb2.GetSuggestionsReply()
        for _ in range(request.current_request_number):
            assignments = []
            for p in spec.parameter_specs.parameters:
                low, high = float(p.feasible_space.min), float(p.feasible_space.max)
                if best is None:
                    x = rng.uniform(low, high)
                else:
                    x = min(high, max(low, best[p.name] + rng.gauss(0, (high - low) / 10)))
                value = str(round(x)) if p.parameter_type == api_pb2.INT else repr(x)
                assignments.append(api_pb2.ParameterAssignment(name=p.name, value=value))
            reply.parameter_assignments.add(assignments=assignments)
        return reply


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=7000)
    args = parser.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    api_pb2_grpc.add_SuggestionServicer_to_server(HillClimb(), server)
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    print(f"hill-climb Suggestion server on 127.0.0.1:{args.port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
