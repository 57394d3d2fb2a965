def test_full_cycle(client, auth, member_with_totp):
    _, totp_obj, codes = member_with_totp
    auth.full_login(totp_obj)
    assert client.get("/").status_code == 200
