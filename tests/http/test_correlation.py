"""A request's correlation id follows the saga it starts."""

from __future__ import annotations

from tests.support import open_api


async def test_the_request_correlation_id_is_attached_to_the_saga_it_starts() -> None:
    async with open_api() as api:
        body = {"saga_type": "test_two_steps", "data": {"name": "c"}}
        response = await api.client.post(
            "/sagas/start", json=body, headers={"X-Correlation-ID": "req-42"}
        )
        assert 202 == response.status_code
        assert "req-42" == response.headers["X-Correlation-ID"]
        saga_id = (await response.get_json())["saga_id"]
        saga = await (await api.client.get(f"/sagas/{saga_id}")).get_json()
        assert "req-42" == saga["correlation_id"]

        # an id given in the body wins over the header's
        body["correlation_id"] = "from-body"
        response = await api.client.post(
            "/sagas/start", json=body, headers={"X-Correlation-ID": "req-43"}
        )
        saga_id = (await response.get_json())["saga_id"]
        saga = await (await api.client.get(f"/sagas/{saga_id}")).get_json()
        assert "from-body" == saga["correlation_id"]
