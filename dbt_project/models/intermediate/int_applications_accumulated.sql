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

applications as (

    select * from {{ ref('stg_applications') }}

),

{% if is_incremental() %}

changed_months as (

    {{ months_to_rebuild(ref('stg_applications')) }}

),

{% endif %}

final as (

    select applications.*
    from applications
    {% if is_incremental() %}
        inner join changed_months
            on applications.month = changed_months.month
    {% endif %}

)

select * from final
