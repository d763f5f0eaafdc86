"""A user's storages: the records (store), the rules (service, placement) and the OAuth connect
flow. The service's names are importable from here, as they were from `backends.storages`:

    from cloudstrype import storages
    storages.list_storages(owner); storages.backend_for(record); storages.DRAINING
"""
from cloudstrype.storages.service import (  # noqa: F401
    DOWN_SECONDS,
    USAGE_MAX_AGE_SECONDS,
    add_storage,
    all_storages,
    backend_for,
    clear_old_error,
    count_shares,
    count_shares_async,
    delete_storage,
    draining_storages,
    get_storage,
    is_oauth,
    list_storages,
    mark_down,
    record_check,
    refresh_usage,
    save_oauth_storage,
    start_draining,
    still_draining,
    stop_draining,
)
from cloudstrype.storages.store import (  # noqa: F401
    ACTIVE,
    DRAINING,
    MEMBER_KIND,
    MEMBER_PREFIX,
    NEEDS_RECONNECT,
    OFFLINE,
    Storage,
    StorageRecord,
    StorageStore,
    member_offline_op,
    member_online_op,
    member_storage_id,
)
