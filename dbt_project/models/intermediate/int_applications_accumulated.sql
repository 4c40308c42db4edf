{#
    All months accumulated, rebuilt one month at a time: a run inserts only the months that are
    new or changed upstream (see months_to_rebuild) and first deletes their stored rows, so
    reloading a month replaces it and never duplicates it.
#}
{{
    config(
        alias='applications',
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='month',
        on_schema_change='fail'
    )
}}

with

final as (

    {{ rows_to_rebuild(ref('stg_applications')) }}

)

select * from final
